//go:build soak

package e2e

import (
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

func envDuration(t *testing.T, name string, def time.Duration) time.Duration {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return d
}

// procRSS is the resident set of pid in MiB, from /proc.
func procRSS(pid int) float64 {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return -1
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, _ := strconv.ParseFloat(f[1], 64)
			return kb / 1024
		}
	}
	return -1
}

func procFDs(pid int) int {
	ents, err := os.ReadDir("/proc/" + strconv.Itoa(pid) + "/fd")
	if err != nil {
		return -1
	}
	return len(ents)
}

// TestSoak runs SOAK_DURATION (default 10m) of mixed load against one
// `serve --role all`: three healthy tenants (endpoints answering in
// 2–20 ms) and one whose endpoint fails every request, batches of 1–20
// events on both webhook routes, some for unregistered Pages, Meta
// redelivering a few acknowledged POSTs every few seconds, and an operator
// using the admin API with every method, good and bad requests alike. Every
// SOAK_INTERVAL (default 30s) it prints the gateway's RSS, goroutines,
// open file descriptors, its Postgres connections and the backlog, so a
// leak shows as a column that keeps growing. At the end every event
// acknowledged for a healthy tenant must have been delivered once, and
// every one for the failing tenant must be kept (pending, failed or
// dead), none lost.
func TestSoak(t *testing.T) {
	duration := envDuration(t, "SOAK_DURATION", 10*time.Minute)
	every := envDuration(t, "SOAK_INTERVAL", 30*time.Second)
	s := newStack(t)
	g := s.startGateway("gateway", "all")
	admin := s.admin(g, s.adminToken("--role", "admin"))
	var ts []*tenantSetup
	for i := range 4 {
		name := fmt.Sprintf("tenant%d", i+1)
		rcv := newReceiver(t, name)
		rcv.light = true
		rcv.setDelay(2*time.Millisecond, 20*time.Millisecond)
		ts = append(ts, s.onboard(admin, name, rcv, 1, 3))
	}
	failing := ts[3]
	failing.rcv.setMode(modeFail)
	s.waitRegistry(admin, ts[0], g)

	m := newMeta(s.ledger, g)
	ld := startLoad(m, ts, genOptions{maxEvents: 20, unroutable: 0.05, rootPath: 0.5}, 20, 30*time.Second)
	stopRedeliver := make(chan struct{})
	redelivered := make(chan int)
	go func() {
		n := 0
		tick := time.NewTicker(5 * time.Second)
		defer tick.Stop()
		for {
			select {
			case <-stopRedeliver:
				redelivered <- n
				return
			case <-tick.C:
				acked := s.ledger.ackedPosts(time.Now())
				var some []*post
				for range min(5, len(acked)) {
					some = append(some, acked[rand.IntN(len(acked))])
				}
				n += eventsIn(some)
				m.resend(some, nil)
			}
		}
	}()

	stopAdmin := make(chan struct{})
	adminDone := make(chan map[int]int)
	go func() { adminDone <- adminTraffic(admin, ts, stopAdmin) }()

	fmt.Printf("%8s %9s %10s %6s %8s %12s %14s %6s %10s %10s\n", "elapsed", "rss_mib", "goroutines", "fds",
		"pg_conns", "backlog_ok", "backlog_failing", "dead", "delivered", "acked_all")
	start := time.Now()
	sample := func() {
		text, _ := g.metrics()
		healthy := 0
		for _, x := range ts[:3] {
			healthy += x.rcv.count()
		}
		failingBacklog := s.db.count(`SELECT count(*) FROM deliveries WHERE tenant_id = $1 AND status IN ('pending', 'failed')`, failing.id)
		fmt.Printf("%8s %9.1f %10.0f %6d %8d %12d %14d %6d %10d %10d\n",
			time.Since(start).Round(time.Second), procRSS(g.proc.pid()), metricValue(text, "go_goroutines"), procFDs(g.proc.pid()),
			s.db.connections(), s.db.backlog()-failingBacklog, failingBacklog, s.db.status("dead"), healthy, s.check(nil).acked)
	}
	sample()
	tick := time.NewTicker(every)
	deadline := time.After(duration)
loop:
	for {
		select {
		case <-tick.C:
			sample()
		case <-deadline:
			break loop
		}
	}
	tick.Stop()
	close(stopRedeliver)
	nRedelivered := <-redelivered
	close(stopAdmin)
	adminCodes := <-adminDone
	ld.finish()
	fmt.Printf("admin requests by status: %v\n", adminCodes)
	for code, n := range adminCodes {
		if code == 0 || code >= 500 {
			t.Errorf("%d admin requests answered %d", n, code)
		}
	}
	g.checkMetrics(t)

	healthy := ts[:3]
	if !waitUntil(60*time.Second, func() bool {
		n := 0
		for _, x := range healthy {
			n += s.undelivered(x)
		}
		return n == 0
	}) {
		t.Error("healthy tenants still miss events 60s after the load")
	}
	time.Sleep(2 * time.Second)
	sample()
	// The failing tenant's events are not delivered; they must all be kept.
	failingAcked := 0
	s.ledger.mu.Lock()
	for _, ev := range s.ledger.events {
		if ev.tenant == failing && ev.acked {
			failingAcked++
		}
	}
	s.ledger.mu.Unlock()
	kept := s.db.count(`SELECT count(*) FROM events WHERE tenant_id = $1`, failing.id)
	s.tenants = healthy // the report: the failing tenant's are counted here
	r := s.check(m)
	s.verdict(t, r, 0, fmt.Sprintf("duration=%s redelivered_events=%d failing_tenant: acked=%d kept=%d (dead=%d)",
		duration, nRedelivered, failingAcked, kept, s.db.status("dead")))
	if kept < failingAcked {
		t.Errorf("the failing tenant had %d events acknowledged, %d are kept", failingAcked, kept)
	}
}

// adminTraffic sends admin requests until stop is closed, about 20 a
// second, with every method on real and unknown routes, good and bad
// bodies, and returns how many got each status.
func adminTraffic(a *adminClient, ts []*tenantSetup, stop <-chan struct{}) map[int]int {
	codes := map[int]int{}
	client := &http.Client{Timeout: 10 * time.Second} // keep-alive: fasthttp reuses its buffers
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for i := 0; ; i++ {
		select {
		case <-stop:
			return codes
		case <-tick.C:
		}
		x := ts[i%len(ts)]
		send := func(method, path, body string) int {
			req, _ := http.NewRequest(method, a.base+path, strings.NewReader(body))
			req.Header.Set("Authorization", "Bearer "+a.token)
			if body != "" {
				req.Header.Set("Content-Type", "application/json")
			}
			resp, err := client.Do(req)
			if err != nil {
				return 0 // counted: a request that got no answer
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			return resp.StatusCode
		}
		var code int
		switch i % 10 {
		case 0:
			code = send("GET", "/tenants/"+x.id, "")
		case 1:
			code = send("GET", "/tenants/"+x.id+"/events?limit=5", "")
		case 2:
			code = send("PATCH", "/tenants/"+x.id, fmt.Sprintf(`{"name":"%s-%d"}`, x.name, i))
		case 3:
			code = send("PUT", "/tenants", `{"name":"x"}`)
		case 4:
			code = send("POST", "/tenants", `{"name":"x\u0000y","callback_url":"https://hooks.example.com/"}`)
		case 5:
			code = send("GET", "/tenants/"+x.id+"/events?type=%00", "")
		case 6:
			code = send("DELETE", "/tenants/"+x.id+"/pages/1", "")
		case 7:
			code = send("OPTIONS", "/tenants", "")
		case 8:
			code = send("HEAD", "/nope/"+strconv.Itoa(i), "")
		default:
			code = send("GET", "/tenants/"+x.id+"/quarantine", "")
		}
		codes[code]++
	}
}
