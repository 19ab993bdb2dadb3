//go:build e2e || soak

package e2e

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

var (
	// gatewayBin is bin/gateway, built once by TestMain.
	gatewayBin string
	// pg is the suite's private Postgres cluster; each test has its own
	// database in it.
	pg *postgresServer
	// tmpRoot holds the cluster, the Redis dirs and every process's log.
	tmpRoot string

	summaryMu sync.Mutex
	summaries []string
)

// TestMain builds the gateway and starts the private Postgres cluster,
// runs the tests one after the other (fault tests stop Postgres), prints
// every test's summary line again at the end, and tears everything down.
func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	root, err := filepath.Abs("..")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	gatewayBin = filepath.Join(root, "bin", "gateway")
	start := time.Now()
	build := exec.Command("go", "build", "-ldflags", "-X main.version=e2e", "-o", gatewayBin, "./cmd/gateway")
	build.Dir, build.Stdout, build.Stderr = root, os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "e2e: build bin/gateway:", err)
		return 1
	}
	if tmpRoot, err = os.MkdirTemp("", "postgate-e2e-"); err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	keep := os.Getenv("E2E_KEEP") != ""
	defer func() {
		if !keep {
			os.RemoveAll(tmpRoot)
		}
	}()
	if pg, err = newPostgres(tmpRoot); err != nil {
		fmt.Fprintln(os.Stderr, "e2e: private postgres:", err)
		return 1
	}
	defer pg.stop(syscall.SIGINT)
	fmt.Printf("e2e: built bin/gateway, private postgres on 127.0.0.1:%d, logs in %s (%s)\n",
		pg.port, tmpRoot, time.Since(start).Round(time.Millisecond))

	code := m.Run()

	summaryMu.Lock()
	if len(summaries) > 0 {
		fmt.Println("\ne2e summaries:")
		for _, s := range summaries {
			fmt.Println("  " + s)
		}
	}
	summaryMu.Unlock()
	if code != 0 {
		keep = true
		fmt.Println("e2e: logs kept in", tmpRoot)
	}
	return code
}

func recordSummary(line string) {
	summaryMu.Lock()
	summaries = append(summaries, line)
	summaryMu.Unlock()
}

func randB64(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return base64.StdEncoding.EncodeToString(b)
}

// stack is one test's world: a fresh database, a private Redis, the
// secrets every gateway process of the test shares, its gateways,
// receivers and tenants, and the ledger of what Meta sent.
type stack struct {
	t         *testing.T
	name      string
	dir       string
	dbURL     string
	redis     *redisServer
	jwtSecret string
	secretKey string
	extraEnv  []string

	mu       sync.Mutex
	gateways []*gatewayProc
	tenants  []*tenantSetup

	ledger *ledger
	db     *dbProbe
}

// newStack starts the test's Redis and database; extraEnv overrides the
// gateways' defaults (KEY=value).
func newStack(t *testing.T, extraEnv ...string) *stack {
	t.Helper()
	if !pg.running() {
		// A previous test failed with Postgres stopped.
		if err := pg.start(); err != nil {
			t.Fatal(err)
		}
	}
	name := strings.NewReplacer("/", "_", " ", "_").Replace(t.Name())
	dir, err := os.MkdirTemp(tmpRoot, name+"-")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dbURL, err := pg.createDatabase(ctx, "e2e")
	if err != nil {
		t.Fatalf("create database: %v", err)
	}
	rs, err := newRedis(dir)
	if err != nil {
		t.Fatalf("private redis: %v", err)
	}
	s := &stack{
		t: t, name: name, dir: dir, dbURL: dbURL, redis: rs,
		jwtSecret: randB64(36), secretKey: randB64(32), extraEnv: extraEnv,
		ledger: newLedger(),
	}
	t.Cleanup(func() {
		s.mu.Lock()
		gws := append([]*gatewayProc(nil), s.gateways...)
		s.mu.Unlock()
		for _, g := range gws {
			g.stop()
		}
		if t.Failed() {
			for _, g := range gws {
				t.Logf("last lines of %s (%s):\n%s", g.name, g.logPath, tail(g.logPath, 30))
			}
		}
		rs.close()
		if s.db != nil {
			s.db.close()
		}
	})
	if s.db, err = newDBProbe(ctx, dbURL); err != nil {
		t.Fatal(err)
	}
	return s
}

// env is the configuration of one gateway process.
func (s *stack) env(httpAddr, metricsAddr string) []string {
	env := []string{
		"PATH=" + os.Getenv("PATH"),
		"HOME=" + s.dir,
		"DATABASE_URL=" + s.dbURL,
		"REDIS_URL=" + s.redis.URL(),
		"ADMIN_JWT_SECRET=" + s.jwtSecret,
		"SECRET_KEY=" + s.secretKey,
		"HTTP_ADDR=" + httpAddr,
		"METRICS_ADDR=" + metricsAddr,
		"PUBLIC_URL=http://" + httpAddr,
		"CALLBACK_ALLOW_PRIVATE=true",
		"RETRY_SCHEDULE=200ms,500ms,1s,2s,3s,5s,5s,5s",
		"CALLBACK_TIMEOUT=2s",
		// A kill -9 leaves claims that come back after the lease: short
		// here, so the kill tests settle sooner, long enough that the
		// Postgres restart test's outcomes (written once it is back) are
		// never overtaken by a second claim.
		"DELIVERY_LEASE=15s",
		"DELIVERY_CONCURRENCY=32",
		"TENANT_RATE=5000",
		"TENANT_BURST=5000",
		"SHUTDOWN_DELAY=0s",
		"SHUTDOWN_TIMEOUT=5s",
		"LOG_FORMAT=json",
		"LOG_LEVEL=info",
		// No call to Meta unless a test gives its fake Graph API (the
		// apps here are made up; Meta is not reachable from tests).
		"GRAPH_API_URL=off",
	}
	return append(env, s.extraEnv...)
}

func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// waitUntil polls cond every 20ms until it holds or within passes.
func waitUntil(within time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
	return true
}
