//go:build e2e || soak

package e2e

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// sentEvent is one event Meta sent, as the ledger knows it.
type sentEvent struct {
	mid     string
	tenant  *tenantSetup // nil: its Page is registered nowhere
	appID   string
	pageID  string
	raw     []byte // the event object, byte for byte
	acked   bool   // a POST carrying it got a 200
	ackedAt time.Time
}

// post is one webhook POST: its bytes, and what became of each try.
type post struct {
	path   string
	body   []byte
	sig    string
	events []*sentEvent
	tries  []try
}

type try struct {
	gateway  string
	sent     time.Time
	answered time.Time
	status   int // 0: no answer (connection refused, timeout)
}

// ledger is everything Meta sent and what it was told.
type ledger struct {
	mu     sync.Mutex
	events map[string]*sentEvent
	posts  []*post
	seq    atomic.Int64
	run    string
}

func newLedger() *ledger {
	return &ledger{events: map[string]*sentEvent{}, run: fmt.Sprintf("%08x", rand.Uint32())}
}

func sign(secret string, body []byte) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

// genOptions shapes the generated batches.
type genOptions struct {
	maxEvents  int     // events per POST: 1..maxEvents
	unroutable float64 // share of POSTs that carry one event for an unregistered Page
	rootPath   float64 // share of POSTs to /webhook instead of /webhook/{app_id}
}

// batch builds one signed POST for a tenant picked by weight: 1..max
// unique postbacks over 1..3 of one app's Pages. Titles carry escaped
// unicode and an escaped slash, as Meta writes them, so byte-for-byte
// forwarding is really tested.
func (l *ledger) batch(tenants []*tenantSetup, o genOptions) *post {
	total := 0
	for _, t := range tenants {
		total += t.weight
	}
	pick := rand.IntN(total)
	var ts *tenantSetup
	for _, t := range tenants {
		if pick < t.weight {
			ts = t
			break
		}
		pick -= t.weight
	}
	app := ts.apps[rand.IntN(len(ts.apps))]
	n := 1 + rand.IntN(o.maxEvents)
	pages := app.pages[:1+rand.IntN(min(3, len(app.pages)))]
	now := time.Now().UnixMilli()
	p := &post{path: "/webhook/" + app.id}
	if rand.Float64() < o.rootPath {
		p.path = "/webhook"
	}
	byPage := map[string][][]byte{}
	newEvent := func(page string, owner *tenantSetup) {
		seq := l.seq.Add(1)
		ev := &sentEvent{mid: fmt.Sprintf("m_e2e-%s-%d", l.run, seq), tenant: owner, appID: app.id, pageID: page}
		ev.raw = fmt.Appendf(nil, `{"sender":{"id":"%d"},"recipient":{"id":"%s"},"timestamp":%d,`+
			`"postback":{"mid":"%s","title":"caf\u00e9 \ud83d\ude00 #%d","payload":"ORDER\/%d"}}`,
			7000000000000000+seq%1000, page, now, ev.mid, seq, seq)
		byPage[page] = append(byPage[page], ev.raw)
		p.events = append(p.events, ev)
	}
	for i := range n {
		newEvent(pages[i%len(pages)], ts)
	}
	order := append([]string(nil), pages...)
	if rand.Float64() < o.unroutable {
		stray := randDigits(15)
		newEvent(stray, nil)
		order = append(order, stray)
	}
	var b bytes.Buffer
	b.WriteString(`{"object":"page","entry":[`)
	for i, page := range order {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"id":"%s","time":%d,"messaging":[%s]}`, page, now, bytes.Join(byPage[page], []byte(",")))
	}
	b.WriteString(`]}`)
	p.body = b.Bytes()
	p.sig = sign(app.secret, p.body)
	l.mu.Lock()
	for _, ev := range p.events {
		l.events[ev.mid] = ev
	}
	l.posts = append(l.posts, p)
	l.mu.Unlock()
	return p
}

// meta sends POSTs as Meta does: a non-200 or no answer is retried with
// the same bytes until a 200 or until ctx ends (Meta retries for about
// an hour; a test has less).
type meta struct {
	l       *ledger
	client  *http.Client
	targets func() []*gatewayProc
	next    atomic.Int64
	retry   time.Duration
	non200  atomic.Int64
	tries   atomic.Int64
}

func newMeta(l *ledger, targets ...*gatewayProc) *meta {
	return &meta{
		l: l, retry: 250 * time.Millisecond,
		client: &http.Client{Timeout: 6 * time.Second, Transport: &http.Transport{
			MaxIdleConnsPerHost: 64, DisableCompression: true,
		}},
		targets: func() []*gatewayProc { return targets },
	}
}

// send POSTs p until a 200 (true) or ctx ends (false), to the gateways
// in turn.
func (m *meta) send(ctx context.Context, p *post) bool { return m.sendVia(ctx, p, nil) }

// sendVia is send to one gateway (nil: the gateways in turn).
func (m *meta) sendVia(ctx context.Context, p *post, via *gatewayProc) bool {
	for {
		g := via
		if g == nil {
			gws := m.targets()
			g = gws[int(m.next.Add(1))%len(gws)]
		}
		tr := try{gateway: g.name, sent: time.Now()}
		req, _ := http.NewRequestWithContext(context.WithoutCancel(ctx), http.MethodPost, g.url(p.path), bytes.NewReader(p.body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-Hub-Signature-256", p.sig)
		req.Header.Set("User-Agent", "facebookexternalua")
		resp, err := m.client.Do(req)
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			tr.status = resp.StatusCode
		}
		tr.answered = time.Now()
		m.tries.Add(1)
		m.l.mu.Lock()
		p.tries = append(p.tries, tr)
		if tr.status == http.StatusOK {
			for _, ev := range p.events {
				if !ev.acked {
					ev.acked, ev.ackedAt = true, tr.answered
				}
			}
		}
		m.l.mu.Unlock()
		if tr.status == http.StatusOK {
			return true
		}
		m.non200.Add(1)
		select {
		case <-ctx.Done():
			return false
		case <-time.After(m.retry):
		}
	}
}

// load is generated traffic at a steady rate of POSTs, each retried as
// Meta would, from a few concurrent senders.
type load struct {
	stop  context.CancelFunc
	done  chan struct{}
	posts atomic.Int64
}

// startLoad sends rate POSTs per second until finish; POSTs that have
// not got their 200 by then keep being retried for retryFor more.
func startLoad(m *meta, tenants []*tenantSetup, o genOptions, rate int, retryFor time.Duration) *load {
	ctx, cancel := context.WithCancel(context.Background())
	ld := &load{stop: cancel, done: make(chan struct{})}
	tickets := make(chan struct{}, 1024)
	go func() {
		tick := time.NewTicker(time.Second / time.Duration(rate))
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				close(tickets)
				return
			case <-tick.C:
				select {
				case tickets <- struct{}{}:
				default: // senders are all retrying: Meta backs off too
				}
			}
		}
	}()
	var senders sync.WaitGroup
	for range 8 {
		senders.Go(func() {
			for range tickets {
				p := m.l.batch(tenants, o)
				ld.posts.Add(1)
				rctx, rcancel := context.WithCancel(context.Background())
				go func() {
					select {
					case <-ctx.Done():
						select {
						case <-time.After(retryFor):
						case <-rctx.Done():
						}
					case <-rctx.Done():
					}
					rcancel()
				}()
				m.send(rctx, p)
				rcancel()
			}
		})
	}
	go func() {
		senders.Wait()
		close(ld.done)
	}()
	return ld
}

// finish stops generating and waits until every POST has its 200 or has
// been given up.
func (ld *load) finish() {
	ld.stop()
	<-ld.done
}

// resend posts the exact bytes of posts again, as Meta's redelivery of
// events it already had a 200 for, and returns how many got a 200. via
// picks the gateway for each POST (nil: in turn).
func (m *meta) resend(posts []*post, via func(*post) *gatewayProc) int {
	ok := 0
	for _, p := range posts {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		var g *gatewayProc
		if via != nil {
			g = via(p)
		}
		if m.sendVia(ctx, p, g) {
			ok++
		}
		cancel()
	}
	return ok
}

// ackedBy is the gateway that answered p's first 200.
func (l *ledger) ackedBy(p *post) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, tr := range p.tries {
		if tr.status == http.StatusOK {
			return tr.gateway
		}
	}
	return ""
}

// eventsIn counts the routable events of posts.
func eventsIn(posts []*post) int {
	n := 0
	for _, p := range posts {
		for _, ev := range p.events {
			if ev.tenant != nil {
				n++
			}
		}
	}
	return n
}

// undelivered counts ts's acked events that ts has not received.
func (s *stack) undelivered(ts *tenantSetup) int {
	got := map[string]bool{}
	for _, d := range ts.rcv.deliveries() {
		got[d.doc.mid()] = true
	}
	s.ledger.mu.Lock()
	defer s.ledger.mu.Unlock()
	n := 0
	for mid, ev := range s.ledger.events {
		if ev.tenant == ts && ev.acked && !got[mid] {
			n++
		}
	}
	return n
}

// latencies are, for ts's deliveries, the time from Meta's 200 to the
// receiver's (zero when the delivery came first), sorted.
func (s *stack) latencies(ts *tenantSetup) []time.Duration {
	ds := ts.rcv.deliveries()
	s.ledger.mu.Lock()
	defer s.ledger.mu.Unlock()
	var out []time.Duration
	for _, d := range ds {
		if ev, ok := s.ledger.events[d.doc.mid()]; ok && ev.acked {
			out = append(out, max(d.at.Sub(ev.ackedAt), 0))
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	return sorted[min(len(sorted)-1, int(float64(len(sorted))*p))]
}

// ackedPosts are the POSTs that got a 200, in order.
func (l *ledger) ackedPosts(before time.Time) []*post {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []*post
	for _, p := range l.posts {
		for _, tr := range p.tries {
			if tr.status == http.StatusOK && tr.answered.Before(before) {
				out = append(out, p)
				break
			}
		}
	}
	return out
}

// tries lists every try of every POST.
func (l *ledger) tries() []try {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []try
	for _, p := range l.posts {
		out = append(out, p.tries...)
	}
	return out
}

// report is what the receivers got, held against what Meta was told.
type report struct {
	posts, tries, non200 int
	acked                int // routable events in a POST that got a 200
	delivered            int // of those, delivered to their tenant at least once
	lost                 int // acked, never delivered
	dupByID              int // deliveries beyond the first of a webhook-id
	dupByMid             int // deliveries beyond the first of a mid
	misrouted            int // delivered to a tenant that does not own it, or never routable
	badSignature         int
	badBody              int // body or headers not as SPEC says
	unacked              int // routable events never acked (Meta would still retry them)
	lostMids             []string
	problems             []string
}

// check compares every receiver of the stack with the ledger.
func (s *stack) check(m *meta) report {
	s.ledger.mu.Lock()
	defer s.ledger.mu.Unlock()
	var r report
	r.posts = len(s.ledger.posts)
	if m != nil {
		r.tries, r.non200 = int(m.tries.Load()), int(m.non200.Load())
	}
	byMid := map[string]int{}
	byID := map[string]int{}
	problem := func(format string, args ...any) {
		if len(r.problems) < 10 {
			r.problems = append(r.problems, fmt.Sprintf(format, args...))
		}
	}
	for _, ts := range s.tenants {
		for _, d := range ts.rcv.deliveries() {
			if d.sigErr != nil {
				r.badSignature++
				problem("%s: webhook-id %s: signature does not verify: %v", ts.name, d.webhookID, d.sigErr)
			}
			if d.docErr != nil {
				r.badBody++
				problem("%s: body is not JSON: %v", ts.name, d.docErr)
				continue
			}
			byID[d.webhookID]++
			mid := d.doc.mid()
			ev, known := s.ledger.events[mid]
			if !known {
				continue // a fixture or another test's own event: checked there
			}
			if ev.tenant != ts || d.doc.TenantID != ts.id {
				r.misrouted++
				problem("%s got mid %s (tenant_id %s, page %s)", ts.name, mid, d.doc.TenantID, ev.pageID)
				continue
			}
			byMid[mid]++
			if !bytes.Equal(d.doc.Event, ev.raw) || d.doc.PageID != ev.pageID || d.doc.AppID != ev.appID ||
				d.doc.Type != "messaging_postbacks" || d.doc.Test || d.doc.Object != "page" || d.doc.Source != "messaging" {
				r.badBody++
				problem("%s: mid %s: event %s page %s app %s type %s, want event %s page %s app %s", ts.name, mid, d.doc.Event, d.doc.PageID, d.doc.AppID, d.doc.Type, ev.raw, ev.pageID, ev.appID)
			}
			for _, p := range d.headerProblems {
				r.badBody++
				problem("%s: mid %s: %s", ts.name, mid, p)
			}
		}
	}
	for _, n := range byID {
		r.dupByID += n - 1
	}
	checked := map[*tenantSetup]bool{}
	for _, ts := range s.tenants {
		checked[ts] = true
	}
	for mid, ev := range s.ledger.events {
		n := byMid[mid]
		r.dupByMid += max(n-1, 0)
		if !checked[ev.tenant] {
			continue // unroutable, or a tenant this check leaves out
		}
		if !ev.acked {
			r.unacked++
			continue
		}
		r.acked++
		if n > 0 {
			r.delivered++
		} else {
			r.lost++
			if len(r.lostMids) < 10 {
				r.lostMids = append(r.lostMids, mid)
			}
		}
	}
	sort.Strings(r.lostMids)
	return r
}

func (r report) duplicated() int { return max(r.dupByID, r.dupByMid) }

func (r report) line() string {
	return fmt.Sprintf("posts=%d tries=%d non200=%d acked=%d delivered=%d lost=%d duplicated=%d (by webhook-id %d, by mid %d) misrouted=%d",
		r.posts, r.tries, r.non200, r.acked, r.delivered, r.lost, r.duplicated(), r.dupByID, r.dupByMid, r.misrouted)
}

// settle waits (up to within) until every acked event has reached its
// tenant and nothing is left to deliver: no event pending, failed or
// leased, so an attempt orphaned by a kill has come back and been
// counted. Then it waits until the receivers have been quiet for quiet,
// and returns the report and how long the first part took.
func (s *stack) settle(m *meta, within, quiet time.Duration) (report, time.Duration) {
	start := time.Now()
	waitUntil(within, func() bool {
		return s.check(m).lost == 0 && s.db.backlog() == 0
	})
	took := time.Since(start)
	last := s.deliveredTotal()
	for quietSince := time.Now(); time.Since(quietSince) < quiet; {
		time.Sleep(100 * time.Millisecond)
		if n := s.deliveredTotal(); n != last {
			last, quietSince = n, time.Now()
		}
	}
	return s.check(m), took
}

func (s *stack) deliveredTotal() int {
	n := 0
	for _, ts := range s.tenants {
		n += ts.rcv.count()
	}
	return n
}

// verdict logs the summary line and fails on anything lost, misrouted,
// badly signed or malformed, or on more duplicates than allowed.
func (s *stack) verdict(t *testing.T, r report, allowDup int, extra string) {
	t.Helper()
	line := t.Name() + ": " + r.line()
	if extra != "" {
		line += " " + extra
	}
	t.Log(line)
	recordSummary(line)
	for _, p := range r.problems {
		t.Error(p)
	}
	if r.acked == 0 {
		t.Error("no event was acknowledged: the test proved nothing")
	}
	if r.lost > 0 {
		t.Errorf("lost %d acknowledged events, e.g. %s", r.lost, strings.Join(r.lostMids, " "))
	}
	if r.misrouted > 0 {
		t.Errorf("%d events reached a tenant that does not own them", r.misrouted)
	}
	if r.badSignature > 0 || r.badBody > 0 {
		t.Errorf("%d deliveries with a bad signature, %d with a wrong body or headers", r.badSignature, r.badBody)
	}
	if r.duplicated() > allowDup {
		t.Errorf("%d duplicate deliveries, at most %d allowed", r.duplicated(), allowDup)
	}
}

func sortDurations(d []time.Duration) {
	sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
}
