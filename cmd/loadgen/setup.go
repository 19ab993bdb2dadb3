package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"

	"github.com/postgate/postgate/internal/secrets"
	"github.com/postgate/postgate/internal/tenant"
)

const (
	appID     = "1001"
	hangAppID = "1002" // tenant A, whose endpoint hangs (-pipeline)
	ordAppID  = "1003" // tenant O, whose endpoint is ordered (-ordering)
)

// bench is the system under test: a fresh database, the gateway process
// and the seeded tenant.
type bench struct {
	opts     options
	progress func(string, ...any)

	dbName   string
	adminURL string // the base database, to create and drop dbName
	dbURL    string
	db       *pgx.Conn // to dbName, for counting events

	gw        *gatewayProc
	tenantID  string
	appSecret []byte
	pages     []string
	// -pipeline: the receiver and the hanging tenant A.
	recv       *receiver
	hangTenant string
	hangSecret []byte
	hangPages  []string
	// -ordering: tenant O, its app's secret and Pages.
	ordTenant string
	ordSecret []byte
	ordPages  []string
	runID     string
	counter   *counter
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func randB64(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return base64.StdEncoding.EncodeToString(b)
}

// newBench creates the database, starts the gateway, seeds and verifies.
// On error the returned bench (if not nil) still needs close.
func newBench(ctx context.Context, opts options, progress func(string, ...any)) (*bench, error) {
	b := &bench{opts: opts, progress: progress, adminURL: opts.databaseURL, runID: randHex(4), counter: &counter{}}
	b.dbName = "postgate_bench_" + randHex(6)

	u, err := url.Parse(opts.databaseURL)
	if err != nil {
		return nil, fmt.Errorf("parse -database-url: %w", err)
	}
	u.Path = "/" + b.dbName
	b.dbURL = u.String()

	admin, err := pgx.Connect(ctx, b.adminURL)
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", redactURL(b.adminURL), err)
	}
	_, err = admin.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{b.dbName}.Sanitize())
	admin.Close(context.Background())
	if err != nil {
		return nil, fmt.Errorf("create database %s: %w", b.dbName, err)
	}
	progress("created database %s", b.dbName)

	secretKey := make([]byte, 32)
	_, _ = rand.Read(secretKey)
	httpAddr, err := freeAddr()
	if err != nil {
		return b, err
	}
	metricsAddr, err := freeAddr()
	if err != nil {
		return b, err
	}
	b.gw = &gatewayProc{path: opts.gateway, httpAddr: httpAddr, metricsAddr: metricsAddr, role: "ingress"}
	env := []string{
		"DATABASE_URL=" + b.dbURL,
		"REDIS_URL=" + opts.redisURL,
		"SECRET_KEY=" + base64.StdEncoding.EncodeToString(secretKey),
		"ADMIN_JWT_SECRET=" + randB64(32),
		"HTTP_ADDR=" + httpAddr,
		"METRICS_ADDR=" + metricsAddr,
		"LOG_LEVEL=warn",
		"SHUTDOWN_DELAY=0s",
		// Only the EX of the dedup keys: they then vanish soon even if
		// the cleanup below is interrupted.
		"DEDUP_TTL=15m",
		// The benchmark's apps are made up, and Meta is not to be called.
		"GRAPH_API_URL=off",
	}
	if opts.pipeline {
		if b.recv, err = startReceiver(); err != nil {
			return b, err
		}
		b.gw.role = "all"
		// Tenant limits out of the way: the benchmark measures the
		// pipeline, not the per-tenant rate limit.
		env = append(env, "CALLBACK_ALLOW_PRIVATE=true", "TENANT_RATE=1000000", "TENANT_BURST=1000000",
			"TENANT_CONCURRENCY=128", "DELIVERY_CONCURRENCY=256", "CALLBACK_TIMEOUT=5s")
	}
	if err := b.gw.start(env); err != nil {
		return b, err
	}
	progress("gateway pid %d on %s (metrics %s), waiting for /readyz", b.gw.pid(), httpAddr, metricsAddr)
	if err := b.gw.waitReady(ctx, 60*time.Second); err != nil {
		return b, err
	}

	if b.db, err = pgx.Connect(ctx, b.dbURL); err != nil {
		return b, fmt.Errorf("connect to %s: %w", b.dbName, err)
	}
	keys, err := secrets.NewKeyring(secretKey, nil)
	if err != nil {
		return b, err
	}
	if err := b.seed(ctx, keys); err != nil {
		return b, fmt.Errorf("seed: %w", err)
	}
	progress("seeded tenant %s, app %s, %d Pages; waiting for the gateway's registry", b.tenantID, appID, len(b.pages))
	if err := b.verify(ctx); err != nil {
		return b, err
	}
	return b, nil
}

// seed inserts one tenant, app 1001 and the Pages, as the admin API would
// store them (secrets sealed under SECRET_KEY, bound to their rows).
func (b *bench) seed(ctx context.Context, keys *secrets.Keyring) error {
	b.tenantID = uuid.NewString()
	b.appSecret = []byte(randHex(16))
	tx, err := b.db.Begin(ctx)
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback(context.Background()) }()
	callback := "https://example.com/hook"
	if b.recv != nil {
		callback = "http://" + b.recv.addr + "/b"
	}
	if err := insertTenant(ctx, tx, keys, b.tenantID, "loadgen", callback, b.opts.endpoints, "none"); err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, `INSERT INTO apps (app_id, tenant_id, secret, verify_token) VALUES ($1, $2, $3, $4)`,
		appID, b.tenantID, keys.Seal(b.appSecret, tenant.AppSecretBinding(appID)), "vt-"+randHex(16)); err != nil {
		return err
	}
	for i := range b.opts.pages {
		page := fmt.Sprintf("1048329577%05d", 20001+i)
		if _, err := tx.Exec(ctx, `INSERT INTO pages (page_id, app_id, tenant_id, object) VALUES ($1, $2, $3, 'page')`,
			page, appID, b.tenantID); err != nil {
			return err
		}
		b.pages = append(b.pages, page)
	}
	if b.recv != nil {
		b.hangTenant = uuid.NewString()
		b.hangSecret = []byte(randHex(16))
		if err := insertTenant(ctx, tx, keys, b.hangTenant, "loadgen-hanging", "http://"+b.recv.addr+"/a", 1, "none"); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `INSERT INTO apps (app_id, tenant_id, secret, verify_token) VALUES ($1, $2, $3, $4)`,
			hangAppID, b.hangTenant, keys.Seal(b.hangSecret, tenant.AppSecretBinding(hangAppID)), "vt-"+randHex(16)); err != nil {
			return err
		}
		for i := range 5 {
			page := fmt.Sprintf("1048329578%05d", 30001+i)
			if _, err := tx.Exec(ctx, `INSERT INTO pages (page_id, app_id, tenant_id, object) VALUES ($1, $2, $3, 'page')`,
				page, hangAppID, b.hangTenant); err != nil {
				return err
			}
			b.hangPages = append(b.hangPages, page)
		}
	}
	if b.opts.ordering {
		// Tenant O: as many Pages as B, one endpoint, ordered.
		b.ordTenant = uuid.NewString()
		b.ordSecret = []byte(randHex(16))
		if err := insertTenant(ctx, tx, keys, b.ordTenant, "loadgen-ordered", "http://"+b.recv.addr+"/o", 1, "conversation"); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `INSERT INTO apps (app_id, tenant_id, secret, verify_token) VALUES ($1, $2, $3, $4)`,
			ordAppID, b.ordTenant, keys.Seal(b.ordSecret, tenant.AppSecretBinding(ordAppID)), "vt-"+randHex(16)); err != nil {
			return err
		}
		for i := range b.opts.pages {
			page := fmt.Sprintf("1048329579%05d", 40001+i)
			if _, err := tx.Exec(ctx, `INSERT INTO pages (page_id, app_id, tenant_id, object) VALUES ($1, $2, $3, 'page')`,
				page, ordAppID, b.ordTenant); err != nil {
				return err
			}
			b.ordPages = append(b.ordPages, page)
		}
	}
	return tx.Commit(ctx)
}

// insertTenant inserts a tenant with n endpoints taking postbacks, all to
// url and with ordering: the first is its default endpoint, with the
// tenant's id (as a migrated one), the others new.
func insertTenant(ctx context.Context, tx pgx.Tx, keys *secrets.Keyring, id, name, url string, n int, ordering string) error {
	if _, err := tx.Exec(ctx, `INSERT INTO tenants (id, name) VALUES ($1, $2)`, id, name); err != nil {
		return err
	}
	for i := range n {
		ep := id
		if i > 0 {
			ep = uuid.NewString()
		}
		if _, err := tx.Exec(ctx, `INSERT INTO endpoints (id, tenant_id, is_default, url, ordering, signing_secret) VALUES ($1, $2, $3, $4, $5, $6)`,
			ep, id, i == 0, url, ordering, keys.Seal([]byte("whsec_"+randB64(24)), tenant.SigningSecretBinding(ep))); err != nil {
			return err
		}
	}
	return nil
}

// verify waits for the gateway to see the seed (LISTEN/NOTIFY), then
// checks that one signed POST is answered 200 and stored.
func (b *bench) verify(ctx context.Context) error {
	select {
	case <-time.After(1500 * time.Millisecond):
	case <-ctx.Done():
		return ctx.Err()
	}
	cl := newClient(b.gw.httpAddr, 5*time.Second)
	defer cl.close()
	bld := newBuilder(b, 1)
	deadline := time.Now().Add(15 * time.Second)
	for {
		first := b.counter.n.Load()
		req := bld.next()
		code, err := cl.post(req)
		if err == nil && code == 200 {
			mid := midFor(b.runID, first+1)
			var n int
			if err := b.db.QueryRow(ctx, `SELECT count(*) FROM events WHERE tenant_id = $1 AND dedup_key = $2`,
				b.tenantID, "m:"+mid).Scan(&n); err != nil {
				return fmt.Errorf("verify: %w", err)
			}
			if n != 1 {
				return fmt.Errorf("verify: POST answered 200 but %d events with mid %s are stored", n, mid)
			}
			b.progress("verified: a signed POST is answered 200 and stored")
			return nil
		}
		if time.Now().After(deadline) {
			if err != nil {
				return fmt.Errorf("verify POST: %w\n%s", err, b.gw.logTail())
			}
			return fmt.Errorf("verify POST: status %d, want 200 (registry not loaded?)\n%s", code, b.gw.logTail())
		}
		select {
		case <-time.After(250 * time.Millisecond):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// versions describes the Postgres and Redis under test.
func (b *bench) versions(ctx context.Context) (pg, rd string) {
	var ver, sync, fsync, sb string
	if err := b.db.QueryRow(ctx, `SELECT current_setting('server_version'), current_setting('synchronous_commit'),
		current_setting('fsync'), current_setting('shared_buffers')`).Scan(&ver, &sync, &fsync, &sb); err == nil {
		pg = fmt.Sprintf("%s (synchronous_commit %s, fsync %s, shared_buffers %s)", ver, sync, fsync, sb)
	}
	opt, err := redis.ParseURL(b.opts.redisURL)
	if err != nil {
		return pg, ""
	}
	rdb := redis.NewClient(opt)
	defer rdb.Close()
	info, err := rdb.Info(ctx, "server", "persistence").Result()
	if err != nil {
		return pg, ""
	}
	get := func(k string) string {
		for line := range strings.Lines(info) {
			if v, ok := strings.CutPrefix(line, k+":"); ok {
				return strings.TrimSpace(v)
			}
		}
		return "?"
	}
	aof := map[string]string{"0": "off", "1": "on"}[get("aof_enabled")]
	return pg, fmt.Sprintf("%s (appendonly %s, db %d)", get("redis_version"), aof, opt.DB)
}

// countEvents is the number of stored events of the tenant the
// scenario's load goes to.
func (b *bench) countEvents(ctx context.Context, sc scenario) (int64, error) {
	var n int64
	err := b.db.QueryRow(ctx, `SELECT count(*) FROM events WHERE tenant_id = $1`, b.loadTenant(sc)).Scan(&n)
	return n, err
}

// loadTenant is the tenant the scenario's load goes to: O for the
// ordered scenarios, B otherwise.
func (b *bench) loadTenant(sc scenario) string {
	if sc.ordered() {
		return b.ordTenant
	}
	return b.tenantID
}

// close stops the gateway, drops the database and deletes the Redis keys.
func (b *bench) close() error {
	var errs []error
	if b.db != nil {
		_ = b.db.Close(context.Background())
	}
	if b.recv != nil {
		defer b.recv.close()
	}
	if b.gw != nil {
		b.progress("stopping the gateway (SIGTERM)")
		if err := b.gw.stop(30 * time.Second); err != nil {
			errs = append(errs, err)
		}
	}
	if b.opts.keep {
		b.progress("kept database %s and Redis keys t:%s:*", b.dbName, b.tenantID)
		return errors.Join(errs...)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for _, id := range []string{b.tenantID, b.ordTenant} {
		if id == "" {
			continue
		}
		n, err := deleteRedisKeys(ctx, b.opts.redisURL, "t:"+id+":*")
		if err != nil {
			errs = append(errs, fmt.Errorf("delete redis keys: %w", err))
		} else {
			b.progress("deleted %d Redis keys", n)
		}
	}
	admin, err := pgx.Connect(ctx, b.adminURL)
	if err != nil {
		return errors.Join(append(errs, fmt.Errorf("drop database %s: %w", b.dbName, err))...)
	}
	defer admin.Close(context.Background())
	if _, err := admin.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{b.dbName}.Sanitize()+" WITH (FORCE)"); err != nil {
		errs = append(errs, fmt.Errorf("drop database %s: %w", b.dbName, err))
	} else {
		b.progress("dropped database %s", b.dbName)
	}
	return errors.Join(errs...)
}

func deleteRedisKeys(ctx context.Context, redisURL, pattern string) (int, error) {
	opt, err := redis.ParseURL(redisURL)
	if err != nil {
		return 0, err
	}
	rdb := redis.NewClient(opt)
	defer rdb.Close()
	n := 0
	var cursor uint64
	for {
		keys, next, err := rdb.Scan(ctx, cursor, pattern, 5000).Result()
		if err != nil {
			return n, err
		}
		if len(keys) > 0 {
			if err := rdb.Unlink(ctx, keys...).Err(); err != nil {
				return n, err
			}
			n += len(keys)
		}
		if cursor = next; cursor == 0 {
			return n, nil
		}
	}
}

func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "(unparseable URL)"
	}
	return u.Redacted()
}

// gatewayVersion runs `gateway version`, which also checks the binary.
func gatewayVersion(ctx context.Context, path string) (string, error) {
	out, err := exec.CommandContext(ctx, path, "version").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("%s version: %w (build it: go build -o bin/gateway ./cmd/gateway)\n%s", path, err, out)
	}
	return strings.TrimSpace(string(out)), nil
}

// gatewayProc is the gateway child process.
type gatewayProc struct {
	path, httpAddr, metricsAddr string
	role                        string
	cmd                         *exec.Cmd
	log                         *tailBuffer
	exited                      chan struct{}
	waitErr                     error
}

func (g *gatewayProc) args() []string { return []string{"serve", "--role", g.role} }

func (g *gatewayProc) commandLine() string {
	return "DATABASE_URL=<fresh db> REDIS_URL=<-redis-url> SECRET_KEY=<random> ADMIN_JWT_SECRET=<random> HTTP_ADDR=" +
		g.httpAddr + " METRICS_ADDR=" + g.metricsAddr + " LOG_LEVEL=warn SHUTDOWN_DELAY=0s DEDUP_TTL=15m " +
		g.path + " " + strings.Join(g.args(), " ")
}

func (g *gatewayProc) start(env []string) error {
	g.log = &tailBuffer{max: 64 << 10}
	g.cmd = exec.Command(g.path, g.args()...)
	// The last value of a duplicated variable wins.
	g.cmd.Env = append(os.Environ(), env...)
	g.cmd.Stdout = g.log
	g.cmd.Stderr = g.log
	// Its own process group: a Ctrl-C reaches only loadgen, which then
	// stops the gateway in order (SIGTERM, wait) before dropping its database.
	// Pdeathsig: if loadgen is killed outright, the gateway still stops.
	g.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	if err := g.cmd.Start(); err != nil {
		return fmt.Errorf("start gateway: %w", err)
	}
	g.exited = make(chan struct{})
	go func() {
		g.waitErr = g.cmd.Wait()
		close(g.exited)
	}()
	return nil
}

func (g *gatewayProc) pid() int { return g.cmd.Process.Pid }

func (g *gatewayProc) alive() bool {
	select {
	case <-g.exited:
		return false
	default:
		return true
	}
}

func (g *gatewayProc) waitReady(ctx context.Context, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	hc := &http.Client{Timeout: 2 * time.Second}
	for {
		if !g.alive() {
			return fmt.Errorf("gateway exited during start: %v\n%s", g.waitErr, g.logTail())
		}
		resp, err := hc.Get("http://" + g.httpAddr + "/readyz")
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("gateway not ready after %s\n%s", limit, g.logTail())
		}
		select {
		case <-time.After(100 * time.Millisecond):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// stop sends SIGTERM and waits; SIGKILL after limit.
func (g *gatewayProc) stop(limit time.Duration) error {
	if g.cmd == nil || g.cmd.Process == nil {
		return nil
	}
	if !g.alive() {
		return nil
	}
	_ = g.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-g.exited:
		var ee *exec.ExitError
		if g.waitErr != nil && !errors.As(g.waitErr, &ee) {
			return g.waitErr
		}
		if g.waitErr != nil {
			return fmt.Errorf("gateway exited with %v\n%s", g.waitErr, g.logTail())
		}
		return nil
	case <-time.After(limit):
		_ = g.cmd.Process.Kill()
		<-g.exited
		return fmt.Errorf("gateway did not stop within %s of SIGTERM; killed", limit)
	}
}

func (g *gatewayProc) logTail() string {
	if g.log == nil {
		return ""
	}
	s := g.log.String()
	if s == "" {
		return "(gateway printed nothing)"
	}
	return "gateway output (tail):\n" + s
}

func (g *gatewayProc) logLines() int { return g.log.lines() }

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu    sync.Mutex
	max   int
	buf   []byte
	nline int
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.nline += bytes.Count(p, []byte{'\n'})
	t.buf = append(t.buf, p...)
	if over := len(t.buf) - t.max; over > 0 {
		t.buf = append(t.buf[:0], t.buf[over:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.buf)
}

func (t *tailBuffer) lines() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.nline
}
