//go:build e2e || soak

package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// gatewayProc is one `gateway serve` child process. It keeps its ports
// across restarts, and appends its JSON log to one file.
type gatewayProc struct {
	s           *stack
	name, role  string
	httpAddr    string
	metricsAddr string
	logPath     string
	proc        *child
	starts      int
}

// startGateway runs `bin/gateway serve --role role --migrate` and waits
// for /readyz.
func (s *stack) startGateway(name, role string) *gatewayProc {
	s.t.Helper()
	hp, err := freePort()
	if err != nil {
		s.t.Fatal(err)
	}
	mp, err := freePort()
	if err != nil {
		s.t.Fatal(err)
	}
	g := &gatewayProc{
		s: s, name: name, role: role,
		httpAddr: "127.0.0.1:" + strconv.Itoa(hp), metricsAddr: "127.0.0.1:" + strconv.Itoa(mp),
		logPath: filepath.Join(s.dir, name+".log"),
	}
	s.mu.Lock()
	s.gateways = append(s.gateways, g)
	s.mu.Unlock()
	g.start()
	return g
}

func (g *gatewayProc) start() {
	t := g.s.t
	t.Helper()
	g.starts++
	cmd := exec.Command(gatewayBin, "serve", "--role", g.role, "--migrate")
	cmd.Env = g.s.env(g.httpAddr, g.metricsAddr)
	var err error
	if g.proc, err = startChild(cmd, g.logPath, nil); err != nil {
		t.Fatal(err)
	}
	ok := waitUntil(30*time.Second, func() bool {
		if !g.proc.running() {
			return true
		}
		return httpStatus("http://"+g.httpAddr+"/readyz") == http.StatusOK
	})
	if !g.proc.running() {
		t.Fatalf("%s exited at start: %v\n%s", g.name, g.proc.err, tail(g.logPath, 30))
	}
	if !ok {
		t.Fatalf("%s not ready after 30s\n%s", g.name, tail(g.logPath, 30))
	}
}

// kill9 is kill -9 of the process, then waits for it to be gone.
func (g *gatewayProc) kill9() {
	_ = syscall.Kill(g.proc.pid(), syscall.SIGKILL)
	<-g.proc.exited
}

// stop is SIGTERM: the orderly drain.
func (g *gatewayProc) stop() { g.proc.signal(syscall.SIGTERM, 30*time.Second) }

func (g *gatewayProc) alive() bool { return g.proc.running() }

func (g *gatewayProc) url(path string) string { return "http://" + g.httpAddr + path }

// metrics scrapes /metrics.
func (g *gatewayProc) metrics() (string, error) {
	resp, err := http.Get("http://" + g.metricsAddr + "/metrics")
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

// checkMetrics scrapes /metrics and fails t unless it answers 200 with
// the gateway's metric families, and every method label of the HTTP
// metrics is an HTTP method (SPEC guarantee 6: a label kept from a buffer
// fasthttp reused reads "GETT" or "POS", and then the whole scrape fails).
func (g *gatewayProc) checkMetrics(t *testing.T) {
	t.Helper()
	resp, err := http.Get("http://" + g.metricsAddr + "/metrics")
	if err != nil {
		t.Fatalf("scrape /metrics: %v", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("scrape /metrics: %d, %v: %.300s", resp.StatusCode, err, b)
	}
	text := string(b)
	for _, family := range []string{"postgate_http_requests_total", "postgate_webhook_requests_total", "postgate_delivery_attempts_total", "go_goroutines"} {
		if !strings.Contains(text, "\n"+family) {
			t.Errorf("/metrics lacks %s", family)
		}
	}
	methods := map[string]bool{"GET": true, "HEAD": true, "POST": true, "PUT": true, "PATCH": true, "DELETE": true, "OPTIONS": true, "CONNECT": true, "TRACE": true}
	for _, line := range strings.Split(text, "\n") {
		if !strings.HasPrefix(line, "postgate_http_") {
			continue
		}
		if i := strings.Index(line, `method="`); i >= 0 {
			m := line[i+len(`method="`):]
			m = m[:strings.IndexByte(m, '"')]
			if !methods[m] {
				t.Errorf("/metrics: method label %q in %s", m, line)
			}
		}
	}
}

// metricValue sums the samples of name whose labels contain every one of
// labels (e.g. `outcome="duplicate"`).
func metricValue(text, name string, labels ...string) float64 {
	sum := 0.0
	sc := bufio.NewScanner(strings.NewReader(text))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name) {
			continue
		}
		rest := line[len(name):]
		lbl := ""
		if strings.HasPrefix(rest, "{") {
			end := strings.Index(rest, "}")
			if end < 0 {
				continue
			}
			lbl, rest = rest[:end+1], rest[end+1:]
		}
		if !strings.HasPrefix(rest, " ") {
			continue
		}
		match := true
		for _, l := range labels {
			if !strings.Contains(lbl, l) {
				match = false
			}
		}
		if !match {
			continue
		}
		f := strings.Fields(rest)
		if v, err := strconv.ParseFloat(f[0], 64); err == nil {
			sum += v
		}
	}
	return sum
}

func httpStatus(url string) int {
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return 0
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// adminToken runs `bin/gateway token` with the stack's ADMIN_JWT_SECRET.
func (s *stack) adminToken(args ...string) string {
	s.t.Helper()
	cmd := exec.Command(gatewayBin, append([]string{"token"}, args...)...)
	cmd.Env = []string{"ADMIN_JWT_SECRET=" + s.jwtSecret, "HOME=" + s.dir, "PATH=" + os.Getenv("PATH")}
	cmd.Dir = s.dir
	out, err := cmd.Output()
	if err != nil {
		s.t.Fatalf("gateway token %v: %v", args, err)
	}
	return strings.TrimSpace(string(out))
}

// adminClient speaks the admin API with one token.
type adminClient struct {
	t     *testing.T
	base  string
	token string
}

func (s *stack) admin(g *gatewayProc, token string) *adminClient {
	return &adminClient{t: s.t, base: g.url("/admin/v1"), token: token}
}

// do sends a request and decodes a 2xx answer into out; it returns the
// status and the raw answer.
func (a *adminClient) do(method, path string, in, out any) (int, []byte) {
	a.t.Helper()
	var body io.Reader
	if in != nil {
		b, _ := json.Marshal(in)
		body = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, a.base+path, body)
	req.Header.Set("Authorization", "Bearer "+a.token)
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	c := http.Client{Timeout: 10 * time.Second}
	resp, err := c.Do(req)
	if err != nil {
		a.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode/100 == 2 && out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			a.t.Fatalf("%s %s: decode %s: %v", method, path, raw, err)
		}
	}
	return resp.StatusCode, raw
}

// must is do that fails the test unless the answer is want.
func (a *adminClient) must(want int, method, path string, in, out any) []byte {
	a.t.Helper()
	code, raw := a.do(method, path, in, out)
	if code != want {
		a.t.Fatalf("%s %s: got %d %s, want %d", method, path, code, raw, want)
	}
	return raw
}

// tenantSetup is one onboarded tenant: its receiver, signing secret, apps
// and Pages.
type tenantSetup struct {
	name    string
	id      string
	secret  string // whsec_..., from the create answer
	rcv     *receiver
	apps    []*appSetup
	weight  int // share of the generated load
	allPage map[string]bool
}

type appSetup struct {
	id     string
	secret string
	pages  []string
	tenant *tenantSetup
}

func randDigits(n int) string {
	var b strings.Builder
	b.WriteByte(byte('1' + mustRandInt(9)))
	for b.Len() < n {
		b.WriteByte(byte('0' + mustRandInt(10)))
	}
	return b.String()
}

func mustRandInt(n int64) int64 {
	v, err := rand.Int(rand.Reader, big.NewInt(n))
	if err != nil {
		panic(err)
	}
	return v.Int64()
}

// onboard creates a tenant through the admin API with its receiver as
// callback, then apps of pagesPerApp Pages each, all with generated ids
// and secrets.
func (s *stack) onboard(a *adminClient, name string, rcv *receiver, apps, pagesPerApp int) *tenantSetup {
	s.t.Helper()
	var created struct {
		ID            string `json:"id"`
		SigningSecret string `json:"signing_secret"`
	}
	a.must(http.StatusCreated, "POST", "/tenants", map[string]any{"name": name, "callback_url": rcv.url()}, &created)
	if !strings.HasPrefix(created.SigningSecret, "whsec_") {
		s.t.Fatalf("create tenant: signing_secret %q, want whsec_...", created.SigningSecret)
	}
	ts := &tenantSetup{name: name, id: created.ID, secret: created.SigningSecret, rcv: rcv, weight: 1, allPage: map[string]bool{}}
	rcv.bind(ts)
	for range apps {
		app := &appSetup{id: randDigits(15), secret: randB64(24), tenant: ts}
		a.must(http.StatusCreated, "POST", "/tenants/"+ts.id+"/apps", map[string]any{"app_id": app.id, "app_secret": app.secret}, nil)
		for range pagesPerApp {
			page := randDigits(15)
			a.must(http.StatusCreated, "POST", "/tenants/"+ts.id+"/pages", map[string]any{"page_id": page, "app_id": app.id}, nil)
			app.pages = append(app.pages, page)
			ts.allPage[page] = true
		}
		ts.apps = append(ts.apps, app)
	}
	s.mu.Lock()
	s.tenants = append(s.tenants, ts)
	s.mu.Unlock()
	return ts
}

// waitRegistry waits until every ingress has loaded everything onboarded
// so far: a sentinel app, registered last, answers Meta's verification
// GET on each (the registry reloads whole snapshots, so whatever was
// committed before the sentinel is there too).
func (s *stack) waitRegistry(a *adminClient, owner *tenantSetup, ingresses ...*gatewayProc) {
	s.t.Helper()
	appID := randDigits(15)
	var app struct {
		VerifyToken string `json:"verify_token"`
	}
	a.must(http.StatusCreated, "POST", "/tenants/"+owner.id+"/apps", map[string]any{"app_id": appID, "app_secret": randB64(24)}, &app)
	for _, g := range ingresses {
		u := g.url("/webhook/" + appID + "?hub.mode=subscribe&hub.challenge=ok&hub.verify_token=" + app.VerifyToken)
		if !waitUntil(10*time.Second, func() bool { return httpStatus(u) == http.StatusOK }) {
			s.t.Fatalf("%s has not loaded the registry after 10s", g.name)
		}
	}
}

// dbProbe reads the test's database directly: counts and states that the
// API does not sum up.
type dbProbe struct {
	pool *pgxpool.Pool
}

func newDBProbe(ctx context.Context, url string) (*dbProbe, error) {
	pool, err := pgxpool.New(ctx, url)
	if err != nil {
		return nil, err
	}
	return &dbProbe{pool: pool}, nil
}

func (d *dbProbe) close() { d.pool.Close() }

// count runs a count(*) query; -1 when it fails (Postgres may be down).
func (d *dbProbe) count(sql string, args ...any) int {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var n int
	if err := d.pool.QueryRow(ctx, sql, args...).Scan(&n); err != nil {
		return -1
	}
	return n
}

// leased is how many events are held by a claim whose outcome is not
// written: after a kill -9, the attempts that may have been in flight.
func (d *dbProbe) leased() int {
	return d.count(`SELECT count(*) FROM deliveries WHERE leased_until IS NOT NULL AND status IN ('pending', 'failed')`)
}

// backlog is how many events wait for delivery.
func (d *dbProbe) backlog() int {
	return d.count(`SELECT count(*) FROM deliveries WHERE status IN ('pending', 'failed')`)
}

// status counts the events in status: their worst delivery's, or dead for
// an event without one (package event's rule).
func (d *dbProbe) status(status string) int {
	return d.count(`SELECT count(*) FROM events e WHERE coalesce(
		(SELECT (ARRAY['delivered', 'pending', 'failed', 'dead'])[max(CASE dl.status
			WHEN 'delivered' THEN 1 WHEN 'pending' THEN 2 WHEN 'failed' THEN 3 ELSE 4 END)]
		 FROM endpoints ep JOIN deliveries dl ON dl.endpoint_id = ep.id AND dl.event_id = e.id WHERE ep.tenant_id = e.tenant_id),
		CASE WHEN e.status IN ('pending', 'failed') THEN 'dead' ELSE e.status END) = $1`, status)
}

// connections is how many backends serve this database.
func (d *dbProbe) connections() int {
	return d.count(`SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()`)
}

func fmtDur(d time.Duration) string {
	return fmt.Sprintf("%.1fs", d.Seconds())
}
