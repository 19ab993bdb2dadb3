//go:build e2e || soak

package e2e

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"
)

// freePort asks the kernel for a free loopback port, never one it handed
// out before in this process.
func freePort() (int, error) {
	portsMu.Lock()
	defer portsMu.Unlock()
	for {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, err
		}
		port := ln.Addr().(*net.TCPAddr).Port
		ln.Close()
		// The kernel may hand a port it just freed out again: two calls in
		// a row once gave HTTP_ADDR and METRICS_ADDR the same one.
		if !portsGiven[port] {
			portsGiven[port] = true
			return port, nil
		}
	}
}

var (
	portsMu    sync.Mutex
	portsGiven = map[int]bool{}
)

// child is a process the suite started. Pdeathsig takes it down with the
// test binary, even on a panic or a go test timeout.
type child struct {
	cmd    *exec.Cmd
	exited chan struct{}
	err    error // Wait's result, set before exited closes
}

func startChild(cmd *exec.Cmd, logPath string, cred *syscall.Credential) (*child, error) {
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Credential: cred}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start %s: %w", cmd.Path, err)
	}
	c := &child{cmd: cmd, exited: make(chan struct{})}
	go func() {
		c.err = cmd.Wait()
		logf.Close()
		close(c.exited)
	}()
	return c, nil
}

func (c *child) pid() int { return c.cmd.Process.Pid }

func (c *child) running() bool {
	select {
	case <-c.exited:
		return false
	default:
		return true
	}
}

// signal sends sig and waits up to within for the exit, then kills.
func (c *child) signal(sig syscall.Signal, within time.Duration) {
	if !c.running() {
		return
	}
	_ = syscall.Kill(c.pid(), sig)
	select {
	case <-c.exited:
	case <-time.After(within):
		_ = syscall.Kill(c.pid(), syscall.SIGKILL)
		<-c.exited
	}
}

// postgresBin finds a Postgres program: PG_BIN, then the newest Debian
// install, then PATH.
func postgresBin(name string) (string, error) {
	if dir := os.Getenv("PG_BIN"); dir != "" {
		return filepath.Join(dir, name), nil
	}
	matches, _ := filepath.Glob("/usr/lib/postgresql/*/bin/" + name)
	sort.Slice(matches, func(i, j int) bool {
		vi, _ := strconv.Atoi(filepath.Base(filepath.Dir(filepath.Dir(matches[i]))))
		vj, _ := strconv.Atoi(filepath.Base(filepath.Dir(filepath.Dir(matches[j]))))
		return vi < vj
	})
	if len(matches) > 0 {
		return matches[len(matches)-1], nil
	}
	return exec.LookPath(name)
}

// postgresServer is the suite's own Postgres cluster: initdb into a temp
// dir (trust auth), one postmaster on a free loopback port with fsync on.
// initdb and postgres refuse to run as root, so as root they run as the
// postgres user (Credential), in directories it owns.
type postgresServer struct {
	dir, data, sock, logPath string
	port                     int
	cred                     *syscall.Credential

	mu   sync.Mutex
	proc *child
	dbs  atomic.Int64
}

func newPostgres(base string) (*postgresServer, error) {
	initdb, err := postgresBin("initdb")
	if err != nil {
		return nil, fmt.Errorf("initdb not found (scripts/services.sh installs postgresql): %w", err)
	}
	p := &postgresServer{dir: filepath.Join(base, "pg")}
	p.data, p.sock, p.logPath = filepath.Join(p.dir, "data"), filepath.Join(p.dir, "sock"), filepath.Join(base, "postgres.log")
	for _, d := range []string{p.dir, p.sock} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, err
		}
	}
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			return nil, fmt.Errorf("running as root, and initdb refuses root: need a postgres user: %w", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		p.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
		for _, d := range []string{base, p.dir, p.sock} {
			if err := os.Chown(d, uid, gid); err != nil {
				return nil, err
			}
		}
		if err := os.Chmod(base, 0o755); err != nil {
			return nil, err
		}
	}
	if p.port, err = freePort(); err != nil {
		return nil, err
	}
	cmd := exec.Command(initdb, "-D", p.data, "-U", "postgres", "-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync")
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "LANG=C"}
	c, err := startChild(cmd, p.logPath, p.cred)
	if err != nil {
		return nil, err
	}
	<-c.exited
	if c.err != nil {
		return nil, fmt.Errorf("initdb: %v (see %s)", c.err, p.logPath)
	}
	return p, p.start()
}

// URL is a connection string for database db.
func (p *postgresServer) URL(db string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", p.port, db)
}

// start runs the postmaster on the cluster's port and waits until it
// accepts connections.
func (p *postgresServer) start() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	bin, err := postgresBin("postgres")
	if err != nil {
		return err
	}
	cmd := exec.Command(bin, "-D", p.data, "-p", strconv.Itoa(p.port), "-k", p.sock,
		"-c", "listen_addresses=127.0.0.1", "-c", "fsync=on", "-c", "synchronous_commit=on",
		"-c", "max_connections=300", "-c", "log_min_messages=warning")
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "LANG=C"}
	if p.proc, err = startChild(cmd, p.logPath, p.cred); err != nil {
		return err
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		conn, err := pgx.Connect(ctx, p.URL("postgres"))
		cancel()
		if err == nil {
			conn.Close(context.Background())
			return nil
		}
		if !p.proc.running() {
			return fmt.Errorf("postgres exited at start: %v (see %s)", p.proc.err, p.logPath)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("postgres not accepting connections after 60s: %w", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// stop shuts the postmaster down: SIGQUIT is an immediate shutdown (a
// crash: no checkpoint, recovery at the next start), SIGINT a fast one.
func (p *postgresServer) stop(sig syscall.Signal) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.proc != nil {
		p.proc.signal(sig, 30*time.Second)
	}
}

func (p *postgresServer) running() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.proc != nil && p.proc.running()
}

// createDatabase makes a fresh, empty database and returns its URL.
func (p *postgresServer) createDatabase(ctx context.Context, prefix string) (string, error) {
	conn, err := pgx.Connect(ctx, p.URL("postgres"))
	if err != nil {
		return "", err
	}
	defer conn.Close(context.Background())
	name := fmt.Sprintf("%s_%d", prefix, p.dbs.Add(1))
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		return "", err
	}
	return p.URL(name), nil
}

// redisServer is a private redis-server without persistence: a restart
// loses every key, as the guarantee demands.
type redisServer struct {
	port    int
	dir     string
	logPath string
	proc    *child
	client  *redis.Client
}

func newRedis(dir string) (*redisServer, error) {
	if _, err := exec.LookPath("redis-server"); err != nil {
		return nil, fmt.Errorf("redis-server not found (scripts/services.sh installs it): %w", err)
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	r := &redisServer{port: port, dir: dir, logPath: filepath.Join(dir, "redis.log")}
	r.client = redis.NewClient(&redis.Options{Addr: r.addr(), MaxRetries: -1})
	return r, r.start()
}

func (r *redisServer) addr() string { return "127.0.0.1:" + strconv.Itoa(r.port) }

// URL is REDIS_URL for the gateway.
func (r *redisServer) URL() string { return "redis://" + r.addr() + "/0" }

func (r *redisServer) start() error {
	cmd := exec.Command("redis-server", "--port", strconv.Itoa(r.port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--daemonize", "no", "--dir", r.dir)
	var err error
	if r.proc, err = startChild(cmd, r.logPath, nil); err != nil {
		return err
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err := r.client.Ping(ctx).Err()
		cancel()
		if err == nil {
			return nil
		}
		if !r.proc.running() {
			return fmt.Errorf("redis-server exited at start: %v (see %s)", r.proc.err, r.logPath)
		}
		if time.Now().After(deadline) {
			return errors.New("redis-server not answering after 20s")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// kill is kill -9: the data is gone.
func (r *redisServer) kill() { r.proc.signal(syscall.SIGKILL, 10*time.Second) }

func (r *redisServer) close() {
	_ = r.client.Close()
	r.proc.signal(syscall.SIGTERM, 10*time.Second)
}
