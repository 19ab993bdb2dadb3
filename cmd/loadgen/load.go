package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// counter numbers events; every event of a run gets its own number and
// so its own mid.
type counter struct{ n atomic.Uint64 }

// mix is splitmix64: spreads consecutive counters over the key space, so
// mids arrive in random order like Meta's (a sequential key would always
// insert at the right edge of the unique index, which is cheaper).
func mix(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ x>>30) * 0xbf58476d1ce4e5b9
	x = (x ^ x>>27) * 0x94d049bb133111eb
	return x ^ x>>31
}

// midFiller pads mids to the length of Meta's (about 86 characters).
const midFiller = "QZrq3H6Hy3CA0q_VFrQEZRqLbgxWKzJxMrkN8EU297qZ8N-nNnGZsTr32bZw"

// appendMid appends the mid of event n of run runID.
func appendMid(b []byte, runID string, n uint64) []byte {
	start := len(b)
	b = append(b, "m_"...)
	var h [8]byte
	v := mix(n)
	for i := range h {
		h[i] = byte(v >> (8 * i))
	}
	b = hex.AppendEncode(b, h[:])
	b = append(b, runID...)
	b = append(b, '_')
	b = strconv.AppendUint(b, n, 10)
	b = append(b, '_')
	if pad := 86 - (len(b) - start); pad > 0 {
		b = append(b, midFiller[:min(pad, len(midFiller))]...)
	}
	return b
}

func midFor(runID string, n uint64) string { return string(appendMid(nil, runID, n)) }

// builder makes signed POST requests of batch events each: a Messenger
// envelope with one entry per event (Pages round-robin), each entry with
// one messaging postback, as Meta batches them.
type builder struct {
	pages []string
	// conversations > 0 (tenant O): event n comes from person n mod
	// conversations (plus 1, unless failing: then person 0, the failing
	// conversation, is one of them), each person on one Page. Otherwise
	// each event has a random person.
	conversations uint64
	failing       bool

	runID  string
	cnt    *counter
	batch  int
	prefix []byte // request line and fixed headers
	mac    hash.Hash
	sum    []byte
	body   []byte
	req    []byte
}

func newBuilder(b *bench, batch int) *builder {
	return newBuilderFor(b, batch, appID, b.pages, b.appSecret)
}

// newHangBuilder builds requests for tenant A, whose endpoint hangs.
func newHangBuilder(b *bench, batch int) *builder {
	return newBuilderFor(b, batch, hangAppID, b.hangPages, b.hangSecret)
}

// newScenarioBuilder builds the requests of sc's load: tenant B's, or
// tenant O's over -conversations people.
func newScenarioBuilder(b *bench, sc scenario) *builder {
	if !sc.ordered() {
		return newBuilder(b, sc.Batch)
	}
	bld := newBuilderFor(b, sc.Batch, ordAppID, b.ordPages, b.ordSecret)
	bld.conversations = uint64(b.opts.conversations)
	bld.failing = sc.Target == targetOrderedFail
	return bld
}

// failingSender is the person of the failing conversation (-ordering):
// tenant O's endpoint answers 500 to every event of theirs.
const failingSender = "7081529900000000"

// appendPerson appends tenant O's person number p as a PSID.
func appendPerson(b []byte, p uint64) []byte {
	b = append(b, "70815299"...)
	s := strconv.AppendUint(nil, p, 10)
	for range 8 - len(s) {
		b = append(b, '0')
	}
	return append(b, s...)
}

func newBuilderFor(b *bench, batch int, app string, pages []string, secret []byte) *builder {
	return &builder{
		pages: pages, runID: b.runID, cnt: b.counter, batch: batch,
		prefix: []byte("POST /webhook/" + app + " HTTP/1.1\r\nHost: " + b.gw.httpAddr +
			"\r\nUser-Agent: facebookexternalua\r\nContent-Type: application/json\r\nX-Hub-Signature-256: sha256="),
		mac: hmac.New(sha256.New, secret),
	}
}

// next returns the bytes of a new request (valid until the next call).
func (b *builder) next() []byte {
	last := b.cnt.n.Add(uint64(b.batch))
	first := last - uint64(b.batch) + 1
	now := time.Now().UnixMilli()
	body := append(b.body[:0], `{"object":"page","entry":[`...)
	for n := first; n <= last; n++ {
		if n != first {
			body = append(body, ',')
		}
		page := b.pages[n%uint64(len(b.pages))]
		var person uint64
		if b.conversations > 0 {
			person = n % b.conversations
			page = b.pages[person%uint64(len(b.pages))]
			if !b.failing {
				person++
			}
		}
		body = append(body, `{"id":"`...)
		body = append(body, page...)
		body = append(body, `","time":`...)
		body = strconv.AppendInt(body, now, 10)
		body = append(body, `,"messaging":[{"sender":{"id":"`...)
		if b.conversations > 0 {
			body = appendPerson(body, person)
		} else {
			body = append(body, "7081529936"...)
			body = strconv.AppendUint(body, 100000+mix(n^0x5a5a)%900000, 10)
		}
		body = append(body, `"},"recipient":{"id":"`...)
		body = append(body, page...)
		body = append(body, `"},"timestamp":`...)
		body = strconv.AppendInt(body, now-int64(mix(n)%900), 10)
		body = append(body, `,"postback":{"mid":"`...)
		body = appendMid(body, b.runID, n)
		body = append(body, `","title":"Get Started","payload":"GET_STARTED"}}]}`...)
	}
	body = append(body, "]}"...)
	b.body = body

	b.mac.Reset()
	b.mac.Write(body)
	b.sum = b.mac.Sum(b.sum[:0])
	req := append(b.req[:0], b.prefix...)
	req = hex.AppendEncode(req, b.sum)
	req = append(req, "\r\nContent-Length: "...)
	req = strconv.AppendInt(req, int64(len(body)), 10)
	req = append(req, "\r\n\r\n"...)
	req = append(req, body...)
	b.req = req
	return req
}

// client is a minimal HTTP/1.1 keep-alive client: one write and usually
// one read per request, a LIFO stack of idle connections. The gateway
// always answers with a Content-Length.
type client struct {
	addr    string
	timeout time.Duration
	mu      sync.Mutex
	idle    []*conn
	dials   atomic.Int64
}

type conn struct {
	c net.Conn
	r *bufio.Reader
}

func newClient(addr string, timeout time.Duration) *client {
	return &client{addr: addr, timeout: timeout}
}

func (cl *client) get() (*conn, bool, error) {
	cl.mu.Lock()
	if n := len(cl.idle); n > 0 {
		cn := cl.idle[n-1]
		cl.idle = cl.idle[:n-1]
		cl.mu.Unlock()
		return cn, true, nil
	}
	cl.mu.Unlock()
	cn, err := cl.dial()
	return cn, false, err
}

func (cl *client) dial() (*conn, error) {
	c, err := net.DialTimeout("tcp", cl.addr, cl.timeout)
	if err != nil {
		return nil, err
	}
	cl.dials.Add(1)
	return &conn{c: c, r: bufio.NewReaderSize(c, 4096)}, nil
}

func (cl *client) put(cn *conn) {
	cl.mu.Lock()
	cl.idle = append(cl.idle, cn)
	cl.mu.Unlock()
}

func (cl *client) close() {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	for _, cn := range cl.idle {
		cn.c.Close()
	}
	cl.idle = nil
}

// post sends one request and returns the response status. A reused
// connection that the server closed while idle gets one retry on a new
// connection (nothing of the request was processed then).
func (cl *client) post(req []byte) (int, error) {
	cn, reused, err := cl.get()
	if err != nil {
		return 0, err
	}
	code, keep, answered, err := cn.roundTrip(req, cl.timeout)
	if err != nil && reused && !answered {
		cn.c.Close()
		if cn, err = cl.dial(); err != nil {
			return 0, err
		}
		code, keep, _, err = cn.roundTrip(req, cl.timeout)
	}
	if err != nil || !keep {
		cn.c.Close()
		return code, err
	}
	cl.put(cn)
	return code, nil
}

var errChunked = errors.New("chunked responses are not supported")

// roundTrip writes req and reads one response. answered reports whether
// any byte of a response arrived.
func (cn *conn) roundTrip(req []byte, timeout time.Duration) (code int, keep, answered bool, err error) {
	if err := cn.c.SetDeadline(time.Now().Add(timeout)); err != nil {
		return 0, false, false, err
	}
	if _, err := cn.c.Write(req); err != nil {
		return 0, false, false, err
	}
	line, err := cn.r.ReadSlice('\n')
	if err != nil {
		return 0, false, len(line) > 0, err
	}
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.")) {
		return 0, false, true, fmt.Errorf("bad status line %q", line)
	}
	if code, err = strconv.Atoi(string(line[9:12])); err != nil {
		return 0, false, true, fmt.Errorf("bad status line %q", line)
	}
	keep = line[7] == '1' // HTTP/1.1 keeps the connection by default
	length := -1
	for {
		h, err := cn.r.ReadSlice('\n')
		if err != nil {
			return code, false, true, err
		}
		h = bytes.TrimRight(h, "\r\n")
		if len(h) == 0 {
			break
		}
		name, value, ok := bytes.Cut(h, []byte(":"))
		if !ok {
			continue
		}
		value = bytes.TrimSpace(value)
		switch {
		case asciiEqualFold(name, "content-length"):
			if length, err = strconv.Atoi(string(value)); err != nil {
				return code, false, true, fmt.Errorf("bad Content-Length %q", value)
			}
		case asciiEqualFold(name, "connection"):
			keep = !asciiEqualFold(value, "close")
		case asciiEqualFold(name, "transfer-encoding"):
			return code, false, true, errChunked
		}
	}
	if length < 0 {
		_, err = io.Copy(io.Discard, cn.r) // body until the server closes
		return code, false, true, err
	}
	if _, err := cn.r.Discard(length); err != nil {
		return code, false, true, err
	}
	return code, keep, true, nil
}

func asciiEqualFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := range len(b) {
		c := b[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != s[i] {
			return false
		}
	}
	return true
}

// window is the measured interval of a scenario.
type window struct{ t0, t1 time.Time }

// workerStats is what one sending goroutine saw; merged at the end.
type workerStats struct {
	// lat holds the ack latency of requests sent (closed loop) or
	// scheduled (fixed rate) inside the window.
	lat []time.Duration
	// sec is, for each lat, the second of the window the request was
	// sent or scheduled in.
	sec []int32
	// byStatus counts responses that arrived inside the window (status 0:
	// no response: connection error or timeout).
	byStatus map[int]int64
	// ok and sent count 200s and requests over the whole scenario
	// (warm-up and drain included), for the stored-events check.
	ok, sent int64
	firstErr string
}

func newWorkerStats() *workerStats { return &workerStats{byStatus: map[int]int64{}} }

func (s *workerStats) record(w window, start, end time.Time, code int, err error) {
	s.sent++
	if err != nil {
		code = 0
		if s.firstErr == "" {
			s.firstErr = err.Error()
		}
	}
	if code == 200 {
		s.ok++
	}
	if !start.Before(w.t0) && start.Before(w.t1) {
		s.lat = append(s.lat, end.Sub(start))
		s.sec = append(s.sec, int32(start.Sub(w.t0)/time.Second))
	}
	if !end.Before(w.t0) && end.Before(w.t1) {
		s.byStatus[code]++
	}
}

// closedLoop runs workers that send back to back until ctx ends, then
// returns when every in-flight request has its answer.
func closedLoop(ctx context.Context, b *bench, sc scenario, w window, cl *client) []*workerStats {
	stats := make([]*workerStats, sc.Workers)
	var wg sync.WaitGroup
	for i := range stats {
		st := newWorkerStats()
		stats[i] = st
		wg.Go(func() {
			bld := newScenarioBuilder(b, sc)
			for ctx.Err() == nil {
				req := bld.next()
				start := time.Now()
				code, err := cl.post(req)
				end := time.Now()
				st.record(w, start, end, code, err)
				if err != nil {
					time.Sleep(10 * time.Millisecond) // no hot loop against a dead server
				}
			}
		})
	}
	wg.Wait()
	return stats
}

// rateLoop schedules sc.Rate requests per second from start until ctx
// ends; a pool of workers sends them. Latency runs from the scheduled
// time, so a stalled server is charged for the requests it delayed (no
// coordinated omission). Go's timers sleep at least ~1 ms when the
// scheduler is idle, so requests leave in small bursts; that slop (under a
// millisecond) is included in the latency too.
func rateLoop(ctx context.Context, b *bench, sc scenario, w window, cl *client, workers int) []*workerStats {
	type job struct {
		at   time.Time
		hang bool
	}
	queue := make(chan job, max(1024, int(2*sc.Rate)))
	builders := sync.Pool{New: func() any { return newScenarioBuilder(b, sc) }}
	hangBuilders := sync.Pool{New: func() any { return newHangBuilder(b, sc.Batch) }}
	stats := make([]*workerStats, workers)
	var wg sync.WaitGroup
	for i := range stats {
		st := newWorkerStats()
		stats[i] = st
		wg.Go(func() {
			for j := range queue {
				pool := &builders
				if j.hang {
					pool = &hangBuilders
				}
				bld := pool.Get().(*builder)
				req := bld.next()
				code, err := cl.post(req)
				pool.Put(bld)
				if j.hang {
					continue // tenant A's load is background, not measured
				}
				st.record(w, j.at, time.Now(), code, err)
			}
		})
	}
	interval := float64(time.Second) / sc.Rate
	start := time.Now()
schedule:
	for i := 0; ; i++ {
		at := start.Add(time.Duration(float64(i) * interval))
		if d := time.Until(at); d > 0 {
			time.Sleep(d)
		}
		select {
		case queue <- job{at: at, hang: sc.Kind == "hang" && i%10 == 9}:
		case <-ctx.Done():
			break schedule
		}
		if ctx.Err() != nil {
			break
		}
	}
	close(queue)
	wg.Wait()
	return stats
}
