//go:build e2e

package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
)

// TestE2EOrdering proves SPEC's "Ordering" and guarantee 7 against the
// real binary: one ingress and two worker processes on one ordered
// endpoint (ordering: conversation, made through the admin API), with an
// unordered endpoint of the same tenant beside it as the control.
//
// Part 1, kill -9 mid-attempt: the receiver holds the first event of a
// conversation open; the worker sending it is killed; the other worker,
// running all along, delivers the other conversations meanwhile but
// nothing of the held one until the lease has expired; then the head
// itself is sent again and the rest follows in order.
//
// Part 2, two workers at once: 200 conversations, POSTs of 1 to 4 events
// (several conversations, several events of one), 5% of attempts answered
// 500 (retried), both workers delivering. The receiver's checker sees
// every request arrive: none may arrive while another of its conversation
// is in flight at the receiver, or before every earlier event of its
// conversation was answered 200. The unordered control, fed the same
// events and the same failures, must show overtakes: the checker can see
// them.
func TestE2EOrdering(t *testing.T) {
	// A short lease, so the kill -9 part takes seconds: it must exceed an
	// attempt (CALLBACK_TIMEOUT) by 5 s.
	const lease = 10 * time.Second
	s := newStack(t, "CALLBACK_TIMEOUT=5s", "DELIVERY_LEASE="+lease.String())
	ingress := s.startGateway("ingress", "ingress")
	w1 := s.startGateway("worker1", "worker")
	admin := s.admin(ingress, s.adminToken("--role", "admin"))

	ordered := newOrderReceiver(t, "ordered")
	control := newOrderReceiver(t, "control")
	o := s.onboardOrdered(admin, ordered, control, 4)

	// Part 1. worker1 alone claims the head, so it is the one to kill.
	const held = "held"
	heads := o.conversation(held, 0)
	ordered.blockFirst(heads.mid(0))
	o.post(t, ingress, heads.take(5)...)
	var arrived time.Time
	select {
	case arrived = <-ordered.blocked:
	case <-time.After(10 * time.Second):
		t.Fatal("the head never reached the ordered endpoint")
	}
	// worker2 starts while worker1 holds the head: it runs, claims, and
	// must still leave the held conversation alone.
	w2 := s.startGateway("worker2", "worker")
	if sinceArrival := time.Since(arrived); sinceArrival > 4*time.Second {
		t.Fatalf("worker2 took %s to start; the head's attempt (CALLBACK_TIMEOUT 5s) may have ended before the kill", sinceArrival)
	}
	var leasedUntil time.Time
	if err := s.db.pool.QueryRow(t.Context(), `SELECT max(leased_until) FROM deliveries
		WHERE endpoint_id = $1 AND status IN ('pending', 'failed') AND leased_until IS NOT NULL`, o.orderedID).Scan(&leasedUntil); err != nil {
		t.Fatalf("read the head's lease: %v", err)
	}
	w1.kill9()
	killedAt := time.Now()
	if !waitUntil(5*time.Second, func() bool { return ordered.aborted() == 1 }) {
		t.Fatal("the held request did not end when its worker was killed")
	}
	// Meanwhile: later events of the held conversation, and other
	// conversations, which worker2 delivers during the lease.
	var others []*orderConv
	for i := range 20 {
		others = append(others, o.conversation(fmt.Sprintf("during-%d", i), i%4))
	}
	o.post(t, ingress, heads.take(3)...)
	for range 4 {
		for _, c := range others {
			o.post(t, ingress, c.take(1)...)
		}
	}
	if !waitUntil(5*time.Second, func() bool { return ordered.deliveredOf(others...) == 80 }) {
		t.Fatalf("while the head was leased, worker2 delivered %d of the other conversations' 80 events", ordered.deliveredOf(others...))
	}
	othersDone := time.Now()
	if !waitUntil(lease+10*time.Second, func() bool { return ordered.deliveredOf(heads) == 8 }) {
		t.Fatalf("the held conversation got %d of its 8 events %s after the kill", ordered.deliveredOf(heads), time.Since(killedAt))
	}
	resent := ordered.firstArrival(heads.mid(0), 2)
	t.Logf("part 1: head held at %s, lease until %s, worker1 killed at %s; 80 events of 20 other conversations delivered by worker2 by %s; head sent again at %s (%s after the kill)",
		arrived.Format("15:04:05.000"), leasedUntil.Format("15:04:05.000"), killedAt.Format("15:04:05.000"),
		othersDone.Format("15:04:05.000"), resent.Format("15:04:05.000"), resent.Sub(killedAt).Round(time.Millisecond))
	if resent.Before(leasedUntil.Add(-100 * time.Millisecond)) {
		t.Errorf("the head was sent again at %s, before its lease ended at %s", resent.Format("15:04:05.000"), leasedUntil.Format("15:04:05.000"))
	}
	if first := ordered.firstArrival(heads.mid(1), 1); !first.After(resent) {
		t.Errorf("the held conversation's second event arrived at %s, before the head was sent again at %s", first.Format("15:04:05.000"), resent.Format("15:04:05.000"))
	}

	// Part 2: two workers at once (worker1 back), many conversations,
	// failures, retries.
	w1.start()
	ordered.setFailRate(0.05)
	control.setFailRate(0.05)
	var convs []*orderConv
	for i := range 200 {
		convs = append(convs, o.conversation(fmt.Sprintf("busy-%d", i), i%4))
	}
	start := time.Now()
	posts := o.postMany(t, ingress, convs, 12, 16)
	total := heads.n + 80 + 200*12
	if !waitUntil(40*time.Second, func() bool { return ordered.delivered() == total && control.delivered() == total }) {
		t.Errorf("after 40s: ordered endpoint %d, control %d of %d events", ordered.delivered(), control.delivered(), total)
	}
	took := time.Since(start)
	var sent [2]float64
	for i, w := range []*gatewayProc{w1, w2} {
		text, _ := w.metrics()
		sent[i] = metricValue(text, "postgate_delivery_attempts_total", `class="ok"`)
	}
	or, cr := ordered.report(), control.report()
	line := fmt.Sprintf("%s: part 2: %d events in %d POSTs over 200 conversations delivered in %s; attempts answered 200 (both endpoints): worker1 (restarted) %.0f, worker2 %.0f; ordered: %s; control (unordered): %s",
		t.Name(), 200*12, posts, fmtDur(took), sent[0], sent[1], or, cr)
	t.Log(line)
	recordSummary(line)
	ordered.check(t, total)
	if cr.overtakes+cr.concurrent == 0 {
		t.Error("the unordered control saw no event overtake another: the test cannot tell ordered from unordered")
	}
	if cr.failed == 0 || or.failed == 0 {
		t.Error("no attempt failed: the test proved nothing about retries")
	}
	if sent[0] == 0 || sent[1] == 0 {
		t.Error("one of the workers delivered nothing: the test proved nothing about two workers")
	}
	if n := control.missing(); n > 0 {
		t.Errorf("the control endpoint misses %d events", n)
	}
}

// orderedSetup is a tenant with one app, its Pages, an ordered endpoint
// and an unordered control endpoint; it numbers the events of each
// conversation in the order they are accepted.
type orderedSetup struct {
	s         *stack
	tenantID  string
	appID     string
	appSecret string
	pages     []string
	orderedID string // the ordered endpoint's uuid, for the database

	mu    sync.Mutex
	run   string
	byMid map[string]orderEvent
	rcvs  []*orderReceiver
}

// orderEvent is event idx (from 0) of conversation conv.
type orderEvent struct {
	conv string
	idx  int
}

// orderConv is one conversation: a Page and a person. n events have been
// made; a conversation's POSTs are sent one at a time, so its events are
// accepted in the order made.
type orderConv struct {
	o      *orderedSetup
	key    string
	page   string
	sender string
	n      int
}

// onboardOrdered creates the tenant through the admin API without a
// callback (so without a default endpoint), the ordered endpoint to ord
// and the unordered control to ctl, and waits until the ingress routes
// to them.
func (s *stack) onboardOrdered(a *adminClient, ord, ctl *orderReceiver, pages int) *orderedSetup {
	s.t.Helper()
	o := &orderedSetup{s: s, appID: randDigits(15), appSecret: randB64(24), run: fmt.Sprintf("%08x", rand.Uint32()),
		byMid: map[string]orderEvent{}, rcvs: []*orderReceiver{ord, ctl}}
	var tenant struct {
		ID string `json:"id"`
	}
	a.must(http.StatusCreated, "POST", "/tenants", map[string]any{"name": "ordered"}, &tenant)
	o.tenantID = tenant.ID
	a.must(http.StatusCreated, "POST", "/tenants/"+o.tenantID+"/apps", map[string]any{"app_id": o.appID, "app_secret": o.appSecret}, nil)
	for range pages {
		p := randDigits(15)
		a.must(http.StatusCreated, "POST", "/tenants/"+o.tenantID+"/pages", map[string]any{"page_id": p, "app_id": o.appID}, nil)
		o.pages = append(o.pages, p)
	}
	for _, r := range o.rcvs {
		var ep struct {
			ID            string `json:"id"`
			Ordering      string `json:"ordering"`
			SigningSecret string `json:"signing_secret"`
		}
		ordering := "none"
		if r == ord {
			ordering = "conversation"
		}
		a.must(http.StatusCreated, "POST", "/tenants/"+o.tenantID+"/endpoints",
			map[string]any{"url": r.url(), "ordering": ordering, "events": []string{"messaging_postbacks"}}, &ep)
		if ep.Ordering != ordering {
			s.t.Fatalf("endpoint %s: ordering %q, want %q", r.name, ep.Ordering, ordering)
		}
		r.bind(o, ep.SigningSecret)
		if r == ord {
			o.orderedID = strings.TrimPrefix(ep.ID, "ep_")
		}
	}
	s.waitRegistry(a, &tenantSetup{id: o.tenantID}, s.gatewaysOfRole("ingress")...)
	return o
}

func (s *stack) gatewaysOfRole(role string) []*gatewayProc {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*gatewayProc
	for _, g := range s.gateways {
		if g.role == role || g.role == "all" {
			out = append(out, g)
		}
	}
	return out
}

// conversation makes a new conversation on Page page (an index).
func (o *orderedSetup) conversation(key string, page int) *orderConv {
	return &orderConv{o: o, key: key, page: o.pages[page], sender: randDigits(16)}
}

func (c *orderConv) mid(idx int) string { return fmt.Sprintf("m_ord-%s-%s-%d", c.o.run, c.key, idx) }

// take makes the conversation's next n events.
func (c *orderConv) take(n int) []orderMade {
	out := make([]orderMade, n)
	c.o.mu.Lock()
	defer c.o.mu.Unlock()
	for i := range out {
		mid := c.mid(c.n)
		c.o.byMid[mid] = orderEvent{conv: c.key, idx: c.n}
		out[i] = orderMade{c: c, mid: mid}
		c.n++
	}
	return out
}

// orderMade is one event to send.
type orderMade struct {
	c   *orderConv
	mid string
}

// post sends events in one signed POST, as Meta lists them: one entry per
// Page in order of first appearance, each with its events in order. It
// fails t unless the ingress answers 200.
func (o *orderedSetup) post(t *testing.T, g *gatewayProc, events ...orderMade) {
	t.Helper()
	if code := o.send(g, events); code != http.StatusOK {
		t.Fatalf("POST of %d events: got %d, want 200", len(events), code)
	}
}

func (o *orderedSetup) send(g *gatewayProc, events []orderMade) int {
	now := time.Now().UnixMilli()
	var pages []string
	byPage := map[string][][]byte{}
	for _, e := range events {
		if _, ok := byPage[e.c.page]; !ok {
			pages = append(pages, e.c.page)
		}
		byPage[e.c.page] = append(byPage[e.c.page], fmt.Appendf(nil,
			`{"sender":{"id":"%s"},"recipient":{"id":"%s"},"timestamp":%d,"postback":{"mid":"%s","title":"Next","payload":"STEP"}}`,
			e.c.sender, e.c.page, now, e.mid))
	}
	var b bytes.Buffer
	b.WriteString(`{"object":"page","entry":[`)
	for i, p := range pages {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"id":"%s","time":%d,"messaging":[%s]}`, p, now, bytes.Join(byPage[p], []byte(",")))
	}
	b.WriteString(`]}`)
	body := b.Bytes()
	code := 0
	for range 20 { // Meta retries a non-200 with the same bytes
		if code = postRaw(g.url("/webhook/"+o.appID), body, map[string]string{"X-Hub-Signature-256": sign(o.appSecret, body)}); code == http.StatusOK {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	return code
}

// postMany sends perConv events of each of convs from senders
// goroutines, each owning some conversations and sending one POST at a
// time of 1 to 4 of its conversations' next events, and returns how many
// POSTs it made.
func (o *orderedSetup) postMany(t *testing.T, g *gatewayProc, convs []*orderConv, perConv, senders int) int {
	t.Helper()
	var wg sync.WaitGroup
	var mu sync.Mutex
	posts, failed := 0, 0
	for i := range senders {
		var own []*orderConv
		for j := i; j < len(convs); j += senders {
			own = append(own, convs[j])
		}
		wg.Go(func() {
			left := map[*orderConv]int{}
			for _, c := range own {
				left[c] = perConv
			}
			for len(left) > 0 {
				var batch []orderMade
				for range 1 + rand.IntN(4) {
					c := own[rand.IntN(len(own))]
					if left[c] == 0 {
						continue
					}
					left[c]--
					if left[c] == 0 {
						delete(left, c)
					}
					batch = append(batch, c.take(1)...)
				}
				if len(batch) == 0 {
					continue
				}
				code := o.send(g, batch)
				mu.Lock()
				posts++
				if code != http.StatusOK {
					failed++
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if failed > 0 {
		t.Fatalf("%d POSTs were not answered 200", failed)
	}
	return posts
}

// orderReceiver is an endpoint that checks the order of what it is sent:
// for each conversation, a request may only arrive once every earlier
// event of its conversation was answered 200, and while no other request
// of its conversation is in flight here. It verifies each request's
// Standard Webhooks signature with the endpoint's secret.
type orderReceiver struct {
	t       *testing.T
	name    string
	addr    string
	srv     *http.Server
	blocked chan time.Time // the held request arrived

	mu        sync.Mutex
	o         *orderedSetup
	wh        *standardwebhooks.Webhook
	failRate  float64
	block     string // the mid to hold open, its first time
	release   chan struct{}
	next      map[string]int  // conversation → events answered 200 in a row from its first
	got       map[string]int  // conversation → events answered 200
	inFlight  map[string]bool // conversation → a request of it is here now
	arrivals  map[string][]time.Time
	ok        map[string]int // mid → times answered 200
	rep       orderReport
	problems  []string
	nAborted  int
	nAnswered int
}

// orderReport sums up what an orderReceiver saw.
type orderReport struct {
	requests   int
	delivered  int // events answered 200 (distinct)
	failed     int // requests answered 500 on purpose
	duplicates int // requests for an event already answered 200
	overtakes  int // arrived before an earlier event of its conversation was delivered
	concurrent int // arrived while another of its conversation was in flight here
	badSig     int
	unknown    int
}

func (r orderReport) String() string {
	return fmt.Sprintf("requests=%d delivered=%d failed_on_purpose=%d duplicates=%d overtakes=%d concurrent=%d bad_signature=%d unknown=%d",
		r.requests, r.delivered, r.failed, r.duplicates, r.overtakes, r.concurrent, r.badSig, r.unknown)
}

func newOrderReceiver(t *testing.T, name string) *orderReceiver {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &orderReceiver{t: t, name: name, addr: ln.Addr().String(), blocked: make(chan time.Time, 1), release: make(chan struct{}),
		next: map[string]int{}, got: map[string]int{}, inFlight: map[string]bool{}, arrivals: map[string][]time.Time{}, ok: map[string]int{}}
	r.srv = &http.Server{Handler: http.HandlerFunc(r.handle), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = r.srv.Serve(ln) }()
	t.Cleanup(func() {
		r.mu.Lock()
		select {
		case <-r.release:
		default:
			close(r.release)
		}
		r.mu.Unlock()
		_ = r.srv.Close()
	})
	return r
}

func (r *orderReceiver) url() string { return "http://" + r.addr + "/hooks/" + r.name }

func (r *orderReceiver) bind(o *orderedSetup, secret string) {
	wh, err := standardwebhooks.NewWebhook(secret)
	if err != nil {
		r.t.Fatalf("signing secret of %s: %v", r.name, err)
	}
	r.mu.Lock()
	r.o, r.wh = o, wh
	r.mu.Unlock()
}

// blockFirst holds the first request for mid open until its sender goes
// away (or the test ends); it does not count as delivered.
func (r *orderReceiver) blockFirst(mid string) {
	r.mu.Lock()
	r.block = mid
	r.mu.Unlock()
}

func (r *orderReceiver) setFailRate(p float64) {
	r.mu.Lock()
	r.failRate = p
	r.mu.Unlock()
}

func (r *orderReceiver) problem(format string, args ...any) {
	if len(r.problems) < 10 {
		r.problems = append(r.problems, fmt.Sprintf(format, args...))
	}
}

func (r *orderReceiver) handle(w http.ResponseWriter, req *http.Request) {
	body, err := io.ReadAll(req.Body)
	if err != nil {
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	at := time.Now()
	var doc deliveryDoc
	_ = json.Unmarshal(body, &doc)
	mid := doc.mid()
	r.o.mu.Lock()
	ev, known := r.o.byMid[mid]
	r.o.mu.Unlock()
	r.mu.Lock()
	r.rep.requests++
	if r.wh == nil || r.wh.Verify(body, req.Header) != nil {
		r.rep.badSig++
		r.problem("%s: request for %s: signature does not verify", r.name, mid)
	}
	if !known {
		r.rep.unknown++
		r.problem("%s: request for an event the test never sent: %.200s", r.name, body)
		r.mu.Unlock()
		http.Error(w, "unknown", http.StatusBadRequest)
		return
	}
	r.arrivals[mid] = append(r.arrivals[mid], at)
	switch next := r.next[ev.conv]; {
	case ev.idx < next:
		r.rep.duplicates++
	case ev.idx > next:
		r.rep.overtakes++
		r.problem("%s: %s event %d arrived before event %d was delivered", r.name, ev.conv, ev.idx, next)
	}
	if r.inFlight[ev.conv] {
		r.rep.concurrent++
		r.problem("%s: %s event %d arrived while another of its conversation was in flight", r.name, ev.conv, ev.idx)
	}
	r.inFlight[ev.conv] = true
	hold := mid == r.block
	if hold {
		r.block = ""
	}
	fail := !hold && rand.Float64() < r.failRate
	release := r.release
	r.mu.Unlock()

	defer func() {
		r.mu.Lock()
		r.inFlight[ev.conv] = false
		r.mu.Unlock()
	}()
	switch {
	case hold:
		r.blocked <- at
		select {
		case <-req.Context().Done(): // its worker is gone
		case <-release:
		}
		r.mu.Lock()
		r.nAborted++
		r.mu.Unlock()
		http.Error(w, "held", http.StatusServiceUnavailable)
	case fail:
		r.mu.Lock()
		r.rep.failed++
		r.mu.Unlock()
		http.Error(w, "failing on purpose", http.StatusInternalServerError)
	default:
		r.mu.Lock()
		if ev.idx == r.next[ev.conv] {
			r.next[ev.conv]++
		}
		if r.ok[mid]++; r.ok[mid] == 1 {
			r.rep.delivered++
			r.got[ev.conv]++
		}
		r.mu.Unlock()
		_, _ = io.WriteString(w, "ok")
	}
}

// aborted is how many held requests ended without an answer of 200.
func (r *orderReceiver) aborted() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.nAborted
}

func (r *orderReceiver) delivered() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.rep.delivered
}

// deliveredOf counts the events of convs answered 200.
func (r *orderReceiver) deliveredOf(convs ...*orderConv) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, c := range convs {
		n += r.got[c.key]
	}
	return n
}

// firstArrival is when the nth request (from 1) for mid arrived; zero if
// it has not.
func (r *orderReceiver) firstArrival(mid string, nth int) time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	if a := r.arrivals[mid]; len(a) >= nth {
		return a[nth-1]
	}
	return time.Time{}
}

// missing counts the events made that were never answered 200 here.
func (r *orderReceiver) missing() int {
	r.o.mu.Lock()
	defer r.o.mu.Unlock()
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for mid := range r.o.byMid {
		if r.ok[mid] == 0 {
			n++
		}
	}
	return n
}

func (r *orderReceiver) report() orderReport {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.rep
}

// check fails t on any request out of order, concurrent within its
// conversation, duplicated, badly signed or unknown, or on an event made
// but not delivered.
func (r *orderReceiver) check(t *testing.T, total int) {
	t.Helper()
	rep := r.report()
	r.mu.Lock()
	for _, p := range r.problems {
		t.Error(p)
	}
	r.mu.Unlock()
	if rep.overtakes > 0 || rep.concurrent > 0 {
		t.Errorf("%s: guarantee 7 broken: %d events arrived before an earlier one of their conversation was delivered, %d while another was in flight",
			r.name, rep.overtakes, rep.concurrent)
	}
	if rep.duplicates > 0 || rep.badSig > 0 || rep.unknown > 0 {
		t.Errorf("%s: %d duplicates, %d bad signatures, %d unknown events", r.name, rep.duplicates, rep.badSig, rep.unknown)
	}
	if n := r.missing(); n > 0 || rep.delivered != total {
		t.Errorf("%s: delivered %d of %d events (%d missing)", r.name, rep.delivered, total, n)
	}
}
