//go:build e2e

package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

const (
	fixtureDir    = "../internal/webhook/testdata/messenger"
	fixtureSecret = "gateway-test-secret-not-real"
	fixtureApp    = "583920174466210"
)

// fixture is one signed Meta body of testdata/messenger with the
// signature its README lists, and the postbacks it should deliver to a
// tenant subscribed to postbacks only.
type fixture struct {
	name string
	body []byte
	sig  string
	want []fixtureEvent
}

type fixtureEvent struct {
	mid    string
	raw    []byte // Meta's event object, byte for byte
	test   bool
	object string
	page   string
}

// loadFixtures reads every fixture body and its README signature, and
// checks the signature against the secret (so a reformatted file fails
// here, not as a mysterious 401).
func loadFixtures(t *testing.T) []fixture {
	t.Helper()
	readme, err := os.ReadFile(filepath.Join(fixtureDir, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	sigs := map[string]string{}
	row := regexp.MustCompile("^\\| `([^`]+\\.json)` \\| *[0-9]+ \\| `(sha256=[0-9a-f]{64})`")
	sc := bufio.NewScanner(bytes.NewReader(readme))
	for sc.Scan() {
		if m := row.FindStringSubmatch(sc.Text()); m != nil {
			sigs[m[1]] = m[2]
		}
	}
	files, _ := filepath.Glob(filepath.Join(fixtureDir, "*.json"))
	var out []fixture
	for _, f := range files {
		name := filepath.Base(f)
		body, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		sig, ok := sigs[name]
		if !ok {
			t.Fatalf("%s: no signature in the fixtures' README", name)
		}
		if got := sign(fixtureSecret, body); got != sig {
			t.Fatalf("%s: README signature %s, the body signs as %s", name, sig, got)
		}
		out = append(out, fixture{name: name, body: body, sig: sig, want: fixturePostbacks(body)})
	}
	if len(out) < 20 {
		t.Fatalf("found %d fixtures in %s", len(out), fixtureDir)
	}
	return out
}

// fixturePostbacks lists the postbacks of a body (messaging[] items with a
// postback mid, and messaging_postbacks changes[]): SPEC's forwarding rule
// for a tenant subscribed to postbacks only. A body that does not decode
// into Meta's shape delivers nothing (it is quarantined).
func fixturePostbacks(body []byte) []fixtureEvent {
	var doc struct {
		Object string `json:"object"`
		Entry  []struct {
			ID        string            `json:"id"`
			Messaging []json.RawMessage `json:"messaging"`
			Changes   []struct {
				Field string          `json:"field"`
				Value json.RawMessage `json:"value"`
			} `json:"changes"`
		} `json:"entry"`
	}
	if json.Unmarshal(body, &doc) != nil {
		return nil
	}
	type ev struct {
		Recipient struct {
			ID string `json:"id"`
		} `json:"recipient"`
		Postback *struct {
			Mid string `json:"mid"`
		} `json:"postback"`
	}
	var out []fixtureEvent
	add := func(raw json.RawMessage, entryID string) {
		var e ev
		if json.Unmarshal(raw, &e) != nil || e.Postback == nil || e.Postback.Mid == "" {
			return
		}
		page := e.Recipient.ID
		if page == "" {
			page = entryID
		}
		out = append(out, fixtureEvent{mid: e.Postback.Mid, raw: raw, test: entryID == "0", object: doc.Object, page: page})
	}
	for _, e := range doc.Entry {
		for _, m := range e.Messaging {
			add(m, e.ID)
		}
		for _, c := range e.Changes {
			if c.Field == "messaging_postbacks" {
				add(c.Value, e.ID)
			}
		}
	}
	return out
}

// onboardFixtures registers the app that signed the fixtures and their
// Pages (and Instagram account) for one tenant.
func (s *stack) onboardFixtures(a *adminClient, rcv *receiver) *tenantSetup {
	s.t.Helper()
	ts := s.onboard(a, "fixtures", rcv, 0, 0)
	a.must(http.StatusCreated, "POST", "/tenants/"+ts.id+"/apps", map[string]any{"app_id": fixtureApp, "app_secret": fixtureSecret}, nil)
	for _, p := range []struct{ id, object string }{
		{"104832957710001", "page"}, {"104832957710002", "page"}, {"104832957710003", "page"}, {"17841455500000101", "instagram"},
	} {
		a.must(http.StatusCreated, "POST", "/tenants/"+ts.id+"/pages", map[string]any{"page_id": p.id, "app_id": fixtureApp, "object": p.object}, nil)
	}
	ts.apps = append(ts.apps, &appSetup{id: fixtureApp, secret: fixtureSecret, tenant: ts})
	return ts
}

// postRaw sends one webhook POST and returns the status (0: no answer).
func postRaw(url string, body []byte, header map[string]string) int {
	req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	for k, v := range header {
		req.Header.Set(k, v)
	}
	c := http.Client{Timeout: 10 * time.Second}
	resp, err := c.Do(req)
	if err != nil {
		return 0
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// TestE2EDelivery is the end-to-end proof of forwarding (guarantees 1, 2,
// 3 and 4 without faults): one `gateway serve --role all`, four tenants
// onboarded through the admin API, every signed fixture of
// testdata/messenger, generated batches on /webhook/{app_id} and /webhook
// (some with an event for a Page nobody registered), and Meta's
// redeliveries. Each receiver must get exactly its own events, once, with
// the bodies SPEC describes and signatures the Standard Webhooks library
// verifies. Then a tenant token must not reach another tenant, and no
// secret may appear in the logs, the database or an API answer.
func TestE2EDelivery(t *testing.T) {
	s := newStack(t)
	g := s.startGateway("gateway", "all")
	adminTok := s.adminToken("--role", "admin")
	admin := s.admin(g, adminTok)

	alpha := s.onboard(admin, "alpha", newReceiver(t, "alpha"), 1, 3)
	beta := s.onboard(admin, "beta", newReceiver(t, "beta"), 2, 2)
	gamma := s.onboard(admin, "gamma", newReceiver(t, "gamma"), 1, 3)
	fx := s.onboardFixtures(admin, newReceiver(t, "fixtures"))
	s.waitRegistry(admin, alpha, g)

	// The fixtures, as Meta signed them, on /webhook/{app_id}; then the
	// postbacks again on /webhook and on /webhook/{app_id} (redeliveries).
	fixtures := loadFixtures(t)
	wantFx := map[string]fixtureEvent{}
	for _, f := range fixtures {
		code := postRaw(g.url("/webhook/"+fixtureApp), f.body, map[string]string{"X-Hub-Signature-256": f.sig})
		if code != http.StatusOK {
			t.Errorf("%s on /webhook/%s: got %d, want 200", f.name, fixtureApp, code)
		}
		for _, e := range f.want {
			wantFx[e.mid] = e
		}
	}
	for _, f := range fixtures {
		if len(f.want) == 0 {
			continue
		}
		for _, path := range []string{"/webhook", "/webhook/" + fixtureApp} {
			if code := postRaw(g.url(path), f.body, map[string]string{"X-Hub-Signature-256": f.sig}); code != http.StatusOK {
				t.Errorf("%s again on %s: got %d, want 200", f.name, path, code)
			}
		}
	}

	// Generated load over three tenants, then Meta redelivers a third of
	// what it had a 200 for.
	m := newMeta(s.ledger, g)
	ld := startLoad(m, []*tenantSetup{alpha, beta, gamma}, genOptions{maxEvents: 20, unroutable: 0.1, rootPath: 0.5}, 40, 10*time.Second)
	time.Sleep(6 * time.Second)
	ld.finish()
	acked := s.ledger.ackedPosts(time.Now())
	again := acked[:len(acked)/3]
	if n := m.resend(again, nil); n != len(again) {
		t.Errorf("redelivered %d POSTs, %d got a 200", len(again), n)
	}
	r, took := s.settle(m, 30*time.Second, 2*time.Second)
	s.verdict(t, r, 0, fmt.Sprintf("fixtures=%d redelivered_posts=%d settled_in=%s", len(wantFx), len(again), fmtDur(took)))
	if r.non200 > 0 {
		t.Errorf("%d POSTs were not answered 200 with every service up", r.non200)
	}

	checkFixtureDeliveries(t, fx, wantFx)
	checkTenantIsolation(t, s, g, alpha, beta)
	checkSecrets(t, s, g, adminTok)
}

// checkFixtureDeliveries: the fixtures tenant got each postback exactly
// once, with Meta's event object byte for byte and the fields SPEC names.
func checkFixtureDeliveries(t *testing.T, fx *tenantSetup, want map[string]fixtureEvent) {
	t.Helper()
	got := map[string]int{}
	for _, d := range fx.rcv.deliveries() {
		mid := d.doc.mid()
		got[mid]++
		w, ok := want[mid]
		if !ok {
			t.Errorf("fixtures tenant got an event it should not: %s", d.body)
			continue
		}
		if d.sigErr != nil {
			t.Errorf("fixture %s: signature does not verify: %v", mid, d.sigErr)
		}
		if !bytes.Equal(d.doc.Event, w.raw) {
			t.Errorf("fixture %s: event\n got %s\nwant %s", mid, d.doc.Event, w.raw)
		}
		if d.doc.Test != w.test || d.doc.Object != w.object || d.doc.PageID != w.page || d.doc.AppID != fixtureApp ||
			d.doc.TenantID != fx.id || d.doc.Type != "messaging_postbacks" {
			t.Errorf("fixture %s: got test=%v object=%s page=%s app=%s tenant=%s type=%s, want test=%v object=%s page=%s app=%s tenant=%s",
				mid, d.doc.Test, d.doc.Object, d.doc.PageID, d.doc.AppID, d.doc.TenantID, d.doc.Type, w.test, w.object, w.page, fixtureApp, fx.id)
		}
		for _, p := range d.headerProblems {
			t.Errorf("fixture %s: %s", mid, p)
		}
		var ev struct {
			Postback struct {
				Title   string `json:"title"`
				Payload string `json:"payload"`
			} `json:"postback"`
		}
		_ = json.Unmarshal(w.raw, &ev)
		if d.doc.Postback.Title != ev.Postback.Title || d.doc.Postback.Payload != ev.Postback.Payload {
			t.Errorf("fixture %s: postback %q/%q, want %q/%q", mid, d.doc.Postback.Title, d.doc.Postback.Payload, ev.Postback.Title, ev.Postback.Payload)
		}
	}
	var mids []string
	for mid := range want {
		mids = append(mids, mid)
	}
	sort.Strings(mids)
	for _, mid := range mids {
		if got[mid] != 1 {
			t.Errorf("fixture postback %s delivered %d times, want once", mid, got[mid])
		}
	}
	t.Logf("fixtures: each of %d postbacks delivered once, though posted up to three times", len(mids))
}

// checkTenantIsolation (guarantee 3): a tenant token reads its own events
// and answers 404 for everything of another tenant.
func checkTenantIsolation(t *testing.T, s *stack, g *gatewayProc, own, other *tenantSetup) {
	t.Helper()
	tok := s.adminToken("--role", "tenant", "--tenant", own.id)
	a := &adminClient{t: t, base: g.url("/admin/v1"), token: tok}
	var page struct {
		Items []struct {
			ID     string `json:"id"`
			PageID string `json:"page_id"`
		} `json:"items"`
	}
	a.must(http.StatusOK, "GET", "/tenants/"+own.id+"/events?limit=200", nil, &page)
	if len(page.Items) == 0 {
		t.Error("a tenant token lists none of its own events")
	}
	for _, e := range page.Items {
		if !own.allPage[e.PageID] {
			t.Errorf("tenant %s lists event %s of Page %s", own.name, e.ID, e.PageID)
		}
	}
	var theirs struct {
		Items []struct {
			ID string `json:"id"`
		} `json:"items"`
	}
	s.admin(g, s.adminToken("--role", "admin")).must(http.StatusOK, "GET", "/tenants/"+other.id+"/events?limit=1", nil, &theirs)
	if len(theirs.Items) == 0 {
		t.Fatal("the other tenant has no events to try to reach")
	}
	for _, c := range []struct{ method, path string }{
		{"GET", "/tenants/" + other.id},
		{"GET", "/tenants/" + other.id + "/events"},
		{"GET", "/tenants/" + other.id + "/events/" + theirs.Items[0].ID},
		{"GET", "/tenants/" + own.id + "/events/" + theirs.Items[0].ID},
		{"POST", "/tenants/" + other.id + "/events/" + theirs.Items[0].ID + "/replay"},
		{"PATCH", "/tenants/" + other.id},
		{"DELETE", "/tenants/" + other.id},
		{"POST", "/tenants/" + other.id + "/signing-secret/rotate"},
		{"GET", "/tenants/" + other.id + "/apps"},
	} {
		var body any
		if c.method == "PATCH" {
			body = map[string]any{"callback_url": own.rcv.url()}
		}
		if code, raw := a.do(c.method, c.path, body, nil); code != http.StatusNotFound {
			t.Errorf("tenant token: %s %s: got %d %s, want 404", c.method, c.path, code, raw)
		}
	}
	if code, _ := a.do("GET", "/tenants", nil, nil); code != http.StatusForbidden {
		t.Errorf("tenant token: GET /tenants: got %d, want 403", code)
	}
}

// checkSecrets (guarantee 4): app secrets, signing secrets and tokens
// appear in no log line, no API answer after creation, and not in clear
// in the database.
func checkSecrets(t *testing.T, s *stack, g *gatewayProc, adminTok string) {
	t.Helper()
	logs, err := os.ReadFile(g.logPath)
	if err != nil {
		t.Fatal(err)
	}
	a := s.admin(g, adminTok)
	type secret struct{ what, value string }
	secrets := []secret{{"ADMIN_JWT_SECRET", s.jwtSecret}, {"SECRET_KEY", s.secretKey}, {"admin token", adminTok}}
	for _, ts := range s.tenants {
		secrets = append(secrets, secret{ts.name + " signing secret", strings.TrimPrefix(ts.secret, "whsec_")})
		for _, app := range ts.apps {
			secrets = append(secrets, secret{ts.name + " app secret", app.secret})
		}
		_, tenantJSON := a.do("GET", "/tenants/"+ts.id, nil, nil)
		_, appsJSON := a.do("GET", "/tenants/"+ts.id+"/apps", nil, nil)
		for _, sec := range secrets[len(secrets)-1-len(ts.apps):] {
			if bytes.Contains(tenantJSON, []byte(sec.value)) || bytes.Contains(appsJSON, []byte(sec.value)) {
				t.Errorf("the %s is returned by the admin API after creation", sec.what)
			}
		}
		if bytes.Contains(tenantJSON, []byte("signing_secret\"")) {
			t.Errorf("GET /tenants/%s carries signing_secret", ts.id)
		}
	}
	stored := map[string][]byte{}
	rows, err := s.db.pool.Query(t.Context(), `SELECT 'endpoint '||id, signing_secret FROM endpoints UNION ALL SELECT 'app '||app_id, secret FROM apps`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var k string
		var v []byte
		if err := rows.Scan(&k, &v); err != nil {
			t.Fatal(err)
		}
		stored[k] = v
	}
	rows.Close()
	for _, sec := range secrets {
		if bytes.Contains(logs, []byte(sec.value)) {
			t.Errorf("the %s appears in the gateway's log", sec.what)
		}
		for k, v := range stored {
			if bytes.Contains(v, []byte(sec.value)) {
				t.Errorf("the %s is stored in clear (%s)", sec.what, k)
			}
		}
	}
	if len(stored) < len(s.tenants) {
		t.Errorf("read %d stored secrets", len(stored))
	}
}

// poison is a signed-able postback whose mid ends in midTail and, when
// testPage is set, a dashboard test event (entry id "0") for that Page.
func poison(app *appSetup, midTail, testPage string) []byte {
	entry, page := app.pages[0], app.pages[0]
	if testPage != "" {
		entry, page = "0", testPage
	}
	return []byte(`{"object":"page","entry":[{"id":"` + entry + `","time":1767225601546,"messaging":[{"sender":{"id":"7"},` +
		`"recipient":{"id":"` + page + `"},"timestamp":1767225601234,"postback":{"mid":"m_poison` + midTail + `","title":"t","payload":"p"}}]}]}`)
}

// TestE2EBadRequests (guarantee 5): while generated traffic flows, every
// kind of bad request SPEC lists, and signed mutations of valid bodies,
// get their documented answer: never a 5xx, the process stays up, and
// every good event is still delivered.
func TestE2EBadRequests(t *testing.T) {
	s := newStack(t, "MAX_BODY_BYTES=65536")
	g := s.startGateway("gateway", "all")
	admin := s.admin(g, s.adminToken("--role", "admin"))
	alpha := s.onboard(admin, "alpha", newReceiver(t, "alpha"), 1, 3)
	beta := s.onboard(admin, "beta", newReceiver(t, "beta"), 1, 3)
	s.waitRegistry(admin, alpha, g)
	app := alpha.apps[0]

	m := newMeta(s.ledger, g)
	ld := startLoad(m, []*tenantSetup{alpha, beta}, genOptions{maxEvents: 10, rootPath: 0.5}, 30, 10*time.Second)

	deep := []byte(strings.Repeat("[", 200) + strings.Repeat("]", 200))
	deepObj := []byte(`{"object":"page","entry":` + strings.Repeat(`[`, 100) + strings.Repeat(`]`, 100) + `}`)
	huge := bytes.Repeat([]byte("a"), 70000)
	valid := []byte(`{"object":"page","entry":[]}`)
	cases := []struct {
		name   string
		path   string
		body   []byte
		header map[string]string
		want   int
	}{
		{"no signature", "/webhook/" + app.id, valid, nil, 401},
		{"malformed signature", "/webhook/" + app.id, valid, map[string]string{"X-Hub-Signature-256": "sha256=zz"}, 401},
		{"wrong secret", "/webhook/" + app.id, valid, map[string]string{"X-Hub-Signature-256": sign("not-the-secret", valid)}, 401},
		{"unknown app", "/webhook/999999999", valid, map[string]string{"X-Hub-Signature-256": sign(app.secret, valid)}, 401},
		{"not JSON on /webhook", "/webhook", []byte("hello"), map[string]string{"X-Hub-Signature-256": sign(app.secret, []byte("hello"))}, 400},
		{"too deep on /webhook", "/webhook", deep, map[string]string{"X-Hub-Signature-256": sign(app.secret, deep)}, 400},
		{"invalid UTF-8 on /webhook", "/webhook", []byte{0xff, 0xfe, '{'}, map[string]string{"X-Hub-Signature-256": sign(app.secret, []byte{0xff, 0xfe, '{'})}, 400},
		{"unregistered Page on /webhook", "/webhook", []byte(`{"object":"page","entry":[{"id":"1","messaging":[{"recipient":{"id":"1"}}]}]}`),
			map[string]string{"X-Hub-Signature-256": "sha256=" + strings.Repeat("0", 64)}, 200},
		{"signed, not JSON", "/webhook/" + app.id, []byte("not json"), map[string]string{"X-Hub-Signature-256": sign(app.secret, []byte("not json"))}, 200},
		{"signed, too deep", "/webhook/" + app.id, deepObj, map[string]string{"X-Hub-Signature-256": sign(app.secret, deepObj)}, 200},
		{"signed, wrong types", "/webhook/" + app.id, []byte(`{"object":["page"],"entry":{"id":null,"time":"x"}}`),
			map[string]string{"X-Hub-Signature-256": sign(app.secret, []byte(`{"object":["page"],"entry":{"id":null,"time":"x"}}`))}, 200},
		// Ids Postgres cannot store as text: such a mid falls back to the
		// hashed key, such a Page makes the event invalid; neither may
		// fail the group commit that other requests share (a 503 to all).
		{"signed, mid with invalid UTF-8", "/webhook/" + app.id, poison(app, "\xff", ""), map[string]string{"X-Hub-Signature-256": sign(app.secret, poison(app, "\xff", ""))}, 200},
		{"signed, mid with an escaped NUL", "/webhook/" + app.id, poison(app, `\u0000`, ""), map[string]string{"X-Hub-Signature-256": sign(app.secret, poison(app, `\u0000`, ""))}, 200},
		{"signed, test event for a NUL Page", "/webhook/" + app.id, poison(app, "x", `\u0000`), map[string]string{"X-Hub-Signature-256": sign(app.secret, poison(app, "x", `\u0000`))}, 200},
		{"over MAX_BODY_BYTES", "/webhook/" + app.id, huge, map[string]string{"X-Hub-Signature-256": sign(app.secret, huge)}, 413},
		{"empty body", "/webhook", nil, map[string]string{"X-Hub-Signature-256": sign(app.secret, nil)}, 400},
	}
	var mu sync.Mutex
	bad := map[string]int{}
	var wg sync.WaitGroup
	loadStart := time.Now()
	for range 4 {
		wg.Go(func() {
			for range 5 {
				for _, c := range cases {
					got := postRaw(g.url(c.path), c.body, c.header)
					if got == 0 && c.want == http.StatusRequestEntityTooLarge {
						// The gateway answered 413 and closed the connection
						// before the client had written the body: the
						// client may see a reset instead of the answer.
						continue
					}
					if got != c.want {
						mu.Lock()
						bad[fmt.Sprintf("%s: got %d, want %d", c.name, got, c.want)]++
						mu.Unlock()
					}
				}
			}
		})
	}
	// A chunked body over the limit (no Content-Length to refuse early).
	wg.Go(func() {
		pr, pw := io.Pipe()
		go func() {
			for range 20 {
				if _, err := pw.Write(bytes.Repeat([]byte("b"), 8192)); err != nil {
					return
				}
			}
			pw.Close()
		}()
		req, _ := http.NewRequest(http.MethodPost, g.url("/webhook/"+app.id), pr)
		req.Header.Set("X-Hub-Signature-256", "sha256="+strings.Repeat("0", 64))
		resp, err := http.DefaultClient.Do(req)
		got := 0
		if err == nil {
			got = resp.StatusCode
			resp.Body.Close()
		}
		if got != 413 && got != 0 {
			mu.Lock()
			bad[fmt.Sprintf("chunked over MAX_BODY_BYTES: got %d, want 413", got)]++
			mu.Unlock()
		}
	})
	// Signed mutations of a valid body: the ingest must answer 200 (stored
	// or quarantined), never a 5xx.
	wg.Go(func() {
		statuses := map[int]int{}
		for i := range 300 {
			body := []byte(fmt.Sprintf(`{"object":"page","entry":[{"id":"%s","time":1767225601546,"messaging":[{"sender":{"id":"7"},"recipient":{"id":"%s"},"timestamp":1767225601234,"postback":{"mid":"m_fuzz-%d","title":"t\u00e9","payload":"p"}}]}]}`,
				app.pages[0], app.pages[0], i))
			for range 1 + rand.IntN(4) {
				const junk = "{}[]\",:0a\\ \x00\xff"
				body[rand.IntN(len(body))] = junk[rand.IntN(len(junk))]
			}
			statuses[postRaw(g.url("/webhook/"+app.id), body, map[string]string{"X-Hub-Signature-256": sign(app.secret, body)})]++
		}
		for code, n := range statuses {
			if code != 200 {
				mu.Lock()
				bad["signed mutation: got "+strconv.Itoa(code)+", want 200"] += n
				mu.Unlock()
			}
		}
	})
	wg.Wait()
	time.Sleep(time.Until(loadStart.Add(6 * time.Second)))
	ld.finish()
	for msg, n := range bad {
		t.Errorf("%s (%d times)", msg, n)
	}
	if !g.alive() || httpStatus(g.url("/healthz")) != 200 {
		t.Fatal("the gateway is not alive after the bad requests")
	}
	var q struct {
		Items []json.RawMessage `json:"items"`
	}
	admin.must(http.StatusOK, "GET", "/tenants/"+alpha.id+"/quarantine?limit=200", nil, &q)
	if len(q.Items) == 0 {
		t.Error("nothing quarantined")
	}
	r, _ := s.settle(m, 30*time.Second, time.Second)
	s.verdict(t, r, 0, fmt.Sprintf("bad_requests=%d quarantined>=%d", 4*5*len(cases)+301, len(q.Items)))
	if r.non200 > 0 {
		t.Errorf("%d good POSTs were not answered 200", r.non200)
	}
	if text, err := g.metrics(); err == nil {
		if n := metricValue(text, "postgate_http_requests_total", `code="5`); n > 0 {
			t.Errorf("%v requests answered 5xx", n)
		}
	}
	g.checkMetrics(t)
}
