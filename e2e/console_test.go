//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
)

// chromiumPath is Debian's Chromium, which .ci/run installs. Without it the
// console test fails under CI=true and is skipped elsewhere.
const chromiumPath = "/usr/bin/chromium"

// Laptop and phone screens of the screenshots.
const (
	laptopW, laptopH = 1280, 800
	phoneW, phoneH   = 390, 844
)

// TestE2EConsole drives the web console in a real headless Chromium against
// the built binary: an operator signs in with an admin token, creates a
// tenant (its secret shown once), registers an app and a Page and adds a
// second endpoint through the forms, sends a test postback; a signed
// postback posted to /webhook/{app_id} is found by its mid through the
// event search, its page shows one attempt per endpoint, and "Replay to
// every endpoint" adds a second one to each. The operator then makes a
// portal link, and in a fresh browser context the tenant signs in with it
// once (a second use is a 404), gets 404 for another tenant and for the
// operator's pages, is refused a POST without the CSRF token, and signs
// out. Every screen is photographed; CONSOLE_SCREENSHOTS=1 writes the
// PNGs to docs/console/.
func TestE2EConsole(t *testing.T) {
	if _, err := os.Stat(chromiumPath); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("the console test needs Chromium at %s (.ci/run installs Debian's chromium package): %v", chromiumPath, err)
		}
		t.Skipf("no Chromium at %s (apt-get install chromium): %v", chromiumPath, err)
	}
	start := time.Now()
	s := newStack(t)
	g := s.startGateway("gateway", "all")
	adminTok := s.adminToken("--role", "admin")
	api := s.admin(g, adminTok)
	bot := newReceiver(t, "bot")
	analytics := newReceiver(t, "analytics")
	shots := newShooter(t)

	browser := newBrowser(t)
	op := newTab(t, browser, g, shots, "operator")

	// Sign in by pasting the admin token.
	op.open("/console/")
	op.wantPath("/console/sign-in")
	op.shot("sign-in", false)
	op.fill("#token", adminTok)
	op.submit(`form[action="/console/sign-in"] button`, http.StatusOK)
	op.wantPath("/console/")
	if got := op.text(".who"); got != "operator" {
		t.Errorf("signed in as %q, want operator", got)
	}
	if c := op.eval(`document.cookie`); strings.Contains(c, "postgate_console") {
		t.Errorf("the session cookie is readable from JavaScript: %q", c)
	}

	// Create a tenant through the form: the secret page, then its page.
	resp := op.open("/console/tenants")
	checkConsoleHeaders(t, resp)
	op.fill(`input[name="name"]`, "Acme Support")
	op.fill(`input[name="callback_url"]`, bot.url())
	op.submit(`form[action="/console/tenants"] button`, http.StatusCreated)
	secret := op.text("#secret")
	if !strings.HasPrefix(secret, "whsec_") {
		t.Fatalf("secret page shows %q, want a whsec_ signing secret", secret)
	}
	op.shot("secret", false)
	op.submit("main a.button", http.StatusOK)
	tenantPath := op.path()
	tenantID := strings.TrimPrefix(tenantPath, "/console/tenants/")
	if !regexp.MustCompile(`^[0-9a-f-]{36}$`).MatchString(tenantID) {
		t.Fatalf("continue led to %s, want /console/tenants/{id}", tenantPath)
	}
	acme := &tenantSetup{name: "Acme Support", id: tenantID, secret: secret, rcv: bot}
	bot.bind(acme)

	// An app, a Page and a second endpoint, through the forms.
	appID, appSecret, pageID := randDigits(15), randB64(24), randDigits(15)
	op.fill("#app-id", appID)
	op.fill("#app-secret", appSecret)
	op.submit(`form[action="`+tenantPath+`/apps"] button`, http.StatusOK)
	op.wantNotice("App registered.")
	op.fill("#page-id", pageID)
	op.fill("#page-app", appID)
	op.fill("#page-object", "page")
	op.submit(`form[action="`+tenantPath+`/pages"] button`, http.StatusOK)
	op.wantNotice("Page registered.")
	op.click("#endpoints > details > summary")
	op.fill("#ep-url", analytics.url())
	op.fill("#ep-desc", "analytics")
	op.submit(`form[action="`+tenantPath+`/endpoints"] button`, http.StatusCreated)
	epSecret := op.text("#secret")
	epID := regexp.MustCompile(`ep_[0-9a-f]{32}`).FindString(op.text("main"))
	if !strings.HasPrefix(epSecret, "whsec_") || epID == "" {
		t.Fatalf("endpoint secret page: secret %q, endpoint %q; want whsec_… of an ep_ id", epSecret, epID)
	}
	analytics.bind(&tenantSetup{name: "Acme Support analytics", id: tenantID, secret: epSecret, rcv: analytics})
	op.submit("main a.button", http.StatusOK)
	op.wantPath(tenantPath)
	if n := op.count(`#endpoints form[action$="/test"]`); n != 2 {
		t.Errorf("%d endpoints listed, want the default and the new one", n)
	}

	// Send test on the new endpoint: the result row, a signed test postback.
	op.submit(`form[action="`+tenantPath+`/endpoints/`+epID+`/test"] button`, http.StatusOK)
	if got := op.text("#test-result"); !strings.Contains(got, "HTTP 200") {
		t.Errorf("#test-result %q, want HTTP 200", got)
	}

	// A signed postback, as Meta sends it, once the ingress knows the app
	// (Meta's verification GET with the verify token the page shows).
	verify := op.text("#vt-" + appID)
	check := g.url("/webhook/" + appID + "?hub.mode=subscribe&hub.challenge=ok&hub.verify_token=" + url.QueryEscape(verify))
	if !waitUntil(10*time.Second, func() bool { return httpStatus(check) == http.StatusOK }) {
		t.Fatalf("the ingress has not loaded app %s after 10s", appID)
	}
	mid := "m_console_" + randDigits(12)
	now := time.Now().UnixMilli()
	body := []byte(fmt.Sprintf(`{"object":"page","entry":[{"id":"%s","time":%d,"messaging":[{"sender":{"id":"%s"},"recipient":{"id":"%s"},`+
		`"timestamp":%d,"postback":{"mid":"%s","title":"Get started","payload":"GET_STARTED"}}]}]}`, pageID, now, randDigits(16), pageID, now, mid))
	if code := postRaw(g.url("/webhook/"+appID), body, map[string]string{"X-Hub-Signature-256": sign(appSecret, body)}); code != http.StatusOK {
		t.Fatalf("signed postback: got %d, want 200", code)
	}
	gotMid := func(r *receiver) int { return midCount(r, mid) }
	if !waitUntil(15*time.Second, func() bool { return gotMid(bot) == 1 && gotMid(analytics) == 1 }) {
		t.Fatalf("postback delivered %d times to the default endpoint and %d to the new one, want once each", gotMid(bot), gotMid(analytics))
	}

	// Found by its mid through the search form; its page, one attempt per
	// endpoint.
	op.open(tenantPath + "/events")
	op.fill(`form.search input[name="mid"]`, mid)
	op.submit("form.search button", http.StatusOK)
	if q := op.path(); !strings.Contains(q, "mid="+mid) {
		t.Errorf("search landed on %s, want a mid= query", q)
	}
	if n := op.count("table.events tbody tr"); n != 1 {
		t.Fatalf("the search by mid lists %d events, want 1", n)
	}
	op.shot("events", false)
	op.submit("table.events tbody a", http.StatusOK)
	eventPath := op.path()
	perEndpoint := func() string {
		return op.eval(`Array.from(document.querySelectorAll(".delivery")).map(d => d.querySelectorAll("tr.attempt").length).join(",")`)
	}
	op.reloadUntil(15*time.Second, func() bool { return perEndpoint() == "1,1" }, "one attempt row per endpoint")
	if got := op.text("main pre.json"); !strings.Contains(got, mid) {
		t.Errorf("the event page's original event lacks the mid:\n%s", got)
	}
	op.shot("event", true)

	// Replay to every endpoint: a second attempt row for each.
	op.submit(`main > form[action="`+eventPath+`/replay"] button`, http.StatusOK)
	op.wantNotice("Queued for delivery again.")
	op.reloadUntil(15*time.Second, func() bool { return perEndpoint() == "2,2" }, "a second attempt row per endpoint after the replay")
	if !waitUntil(5*time.Second, func() bool { return gotMid(bot) == 2 && gotMid(analytics) == 2 }) {
		t.Errorf("after the replay: %d and %d deliveries of the mid, want 2 each", gotMid(bot), gotMid(analytics))
	}

	// The analytics endpoint is made ordered per conversation in its edit
	// form; while it fails, a person's second message waits behind the
	// first, and the second's page says so, linking the first. Then both
	// arrive, in order; the default endpoint (unordered) is not held.
	op.open(tenantPath)
	op.eval(`(() => { const d = document.querySelector('form[action="` + tenantPath + `/endpoints/` + epID + `/edit"]').closest("details"); d.open = true; return "" })()`)
	op.eval(`(() => { document.querySelector("#ord-` + epID + `").value = "conversation"; return "" })()`)
	op.submit(`form[action="`+tenantPath+`/endpoints/`+epID+`/edit"] button`, http.StatusOK)
	op.wantNotice("Endpoint changed.")
	if got := op.text("#endpoints table"); !strings.Contains(got, "ordered per conversation") {
		t.Errorf("the endpoints table does not show the ordering: %q", got)
	}
	analytics.setMode(modeFail)
	person := randDigits(16)
	midA, midB := "m_first_"+randDigits(10), "m_second_"+randDigits(10)
	now = time.Now().UnixMilli()
	pair := []byte(fmt.Sprintf(`{"object":"page","entry":[{"id":"%[1]s","time":%[3]d,"messaging":[`+
		`{"sender":{"id":"%[2]s"},"recipient":{"id":"%[1]s"},"timestamp":%[3]d,"postback":{"mid":"%[4]s","title":"Track order","payload":"TRACK"}},`+
		`{"sender":{"id":"%[2]s"},"recipient":{"id":"%[1]s"},"timestamp":%[3]d,"postback":{"mid":"%[5]s","title":"Talk to a human","payload":"HUMAN"}}]}]}`,
		pageID, person, now, midA, midB))
	if code := postRaw(g.url("/webhook/"+appID), pair, map[string]string{"X-Hub-Signature-256": sign(appSecret, pair)}); code != http.StatusOK {
		t.Fatalf("signed pair of postbacks: got %d, want 200", code)
	}
	if !waitUntil(15*time.Second, func() bool { return midCount(bot, midA) == 1 && midCount(bot, midB) == 1 }) {
		t.Errorf("the unordered default endpoint got %d and %d of the pair, want both at once", midCount(bot, midA), midCount(bot, midB))
	}
	op.open(tenantPath + "/events?mid=" + midB)
	op.submit("table.events tbody a", http.StatusOK)
	op.reloadUntil(15*time.Second, func() bool { return op.count(".held.waiting") == 1 }, "the second message held back")
	if got := op.text(".held.waiting"); !strings.Contains(got, "Held back") || !strings.Contains(got, "evt_") {
		t.Errorf("the held delivery says %q, want it held back behind an event", got)
	}
	op.shot("event-held", true)
	op.submit(".held.waiting a", http.StatusOK)
	if got := op.text("main pre.json"); !strings.Contains(got, midA) {
		t.Errorf("the held delivery's link leads to an event without the first mid:\n%s", got)
	}
	analytics.setMode(modeOK)
	if !waitUntil(30*time.Second, func() bool { return midCount(analytics, midA) == 1 && midCount(analytics, midB) == 1 }) {
		t.Fatalf("after the endpoint recovered: %d and %d of the pair delivered to it, want 1 each", midCount(analytics, midA), midCount(analytics, midB))
	}
	var order []string
	for _, d := range analytics.deliveries() {
		if m := d.doc.mid(); m == midA || m == midB {
			order = append(order, m)
		}
	}
	if len(order) != 2 || order[0] != midA {
		t.Errorf("the ordered endpoint received %v, want %s before %s", order, midA, midB)
	}

	// A signed body that is not Meta's shape lands in quarantine.
	junk := []byte(`{"object":["page"],"entry":{"id":null}}`)
	if code := postRaw(g.url("/webhook/"+appID), junk, map[string]string{"X-Hub-Signature-256": sign(appSecret, junk)}); code != http.StatusOK {
		t.Fatalf("signed unreadable body: got %d, want 200", code)
	}
	op.open(tenantPath + "/quarantine")
	op.reloadUntil(10*time.Second, func() bool { return op.count("main table tbody tr") == 1 }, "the quarantined body")
	op.shot("quarantine", false)

	// A second tenant, through the admin API; the lists.
	var other struct {
		ID string `json:"id"`
	}
	api.must(http.StatusCreated, "POST", "/tenants", map[string]any{"name": "Globex Retail", "callback_url": bot.url()}, &other)
	op.open("/console/tenants")
	if n := op.count("main table tbody tr"); n != 2 {
		t.Errorf("the tenants page lists %d tenants, want 2", n)
	}
	op.shot("tenants", false)
	op.open("/console/")
	op.reloadUntil(15*time.Second, func() bool { return op.count(`main table a[href^="/console/tenants/"]`) == 2 }, "both tenants on the overview")
	op.shot("overview", true)

	// The admin API's portal link answers its URL and expiry.
	var apiLink struct {
		URL       string    `json:"url"`
		ExpiresAt time.Time `json:"expires_at"`
	}
	api.must(http.StatusCreated, "POST", "/tenants/"+other.ID+"/portal-links", nil, &apiLink)
	if !strings.HasPrefix(apiLink.URL, g.url("/console/link/")) || apiLink.ExpiresAt.Before(time.Now()) {
		t.Errorf("portal link from the admin API: %+v", apiLink)
	}

	// The operator makes a portal link with the button.
	op.open(tenantPath)
	op.submit(`form[action="`+tenantPath+`/portal-link"] button`, http.StatusCreated)
	portal := op.text("#portal-url")
	if !strings.HasPrefix(portal, g.url("/console/link/")) {
		t.Fatalf("#portal-url is %q, want a link under %s", portal, g.url("/console/link/"))
	}
	op.shot("tenant", true)
	op.open(tenantPath)
	op.emulate(phoneW, phoneH, true)
	op.shot("tenant-phone", true)
	op.emulate(laptopW, laptopH, false)

	// The tenant, in a fresh browser context (no cookie of the operator's).
	ten := newTab(t, browser, g, shots, "tenant")
	if st := ten.open(portal).Status; st != http.StatusOK {
		t.Fatalf("portal link landing page: %d, want 200", st)
	}
	if n := ten.count(".signout"); n != 0 {
		t.Fatal("the fresh browser context is signed in already")
	}
	ten.shot("portal-link", false)
	ten.submit(`main form button`, http.StatusOK)
	ten.wantPath(tenantPath)
	if got := ten.text(".who"); got != "tenant" {
		t.Errorf("signed in by the portal link as %q, want tenant", got)
	}
	if n := ten.count(`nav a[href="/console/tenants"], #portal`); n != 0 {
		t.Errorf("the tenant sees %d operator links or sections", n)
	}

	// The link works once.
	if st := ten.open(portal).Status; st != http.StatusNotFound {
		t.Errorf("portal link used a second time: %d, want 404", st)
	}
	if got := ten.text("main"); !strings.Contains(got, "used or has expired") {
		t.Errorf("second use of the portal link says %q", got)
	}

	// Nothing of another tenant, nothing of the operator's.
	for _, p := range []string{"/console/tenants/" + other.ID, "/console/tenants/" + other.ID + "/events", "/console/tenants"} {
		if st := ten.open(p).Status; st != http.StatusNotFound {
			t.Errorf("tenant session: GET %s: %d, want 404", p, st)
		}
	}
	ten.open("/console/")
	ten.wantPath(tenantPath)

	// A POST without the CSRF token is refused: a form whose hidden input
	// is removed, and a sign-out form with a forged one. (The CSP's
	// default-src 'none' leaves fetch no origin to connect to.)
	ten.open(tenantPath)
	sendTest := `form[action="` + tenantPath + `/endpoints/` + epID + `/test"]`
	ten.eval(`document.querySelector('` + sendTest + ` input[name="csrf"]').remove(), ""`)
	ten.submit(sendTest+" button", http.StatusForbidden)
	if got := ten.text("main"); !strings.Contains(got, "CSRF") {
		t.Errorf("the refusal says %q, want it to name the CSRF token", got)
	}
	ten.submitJS(`(() => {
		const f = document.createElement("form");
		f.method = "post";
		f.action = "/console/sign-out";
		const i = document.createElement("input");
		i.type = "hidden"; i.name = "csrf"; i.value = "forged";
		f.append(i);
		document.body.append(f);
		f.submit();
	})()`, http.StatusForbidden)
	if st := ten.open(tenantPath).Status; st != http.StatusOK {
		t.Errorf("the tenant's page after the refused POSTs: %d, want 200 (still signed in)", st)
	}

	// Sign out ends the session.
	ten.submit(".signout button", http.StatusOK)
	ten.wantPath("/console/sign-in")
	for _, p := range []string{"/console/", tenantPath} {
		ten.open(p)
		ten.wantPath("/console/sign-in")
	}

	for _, r := range []*receiver{bot, analytics} {
		for _, d := range r.deliveries() {
			if d.sigErr != nil {
				t.Errorf("receiver %s: a delivery does not verify with the secret the console showed: %v", r.name, d.sigErr)
			}
			if d.doc.mid() == mid {
				for _, p := range d.headerProblems {
					t.Errorf("receiver %s: %s", r.name, p)
				}
			}
		}
	}
	op.checkConsole()
	ten.checkConsole()
	recordSummary(fmt.Sprintf("%s: %d screens (written: %v) in %s", t.Name(), shots.n, shots.write, fmtDur(time.Since(start))))
}

// midCount is how many deliveries of mid r accepted.
func midCount(r *receiver, mid string) int {
	n := 0
	for _, d := range r.deliveries() {
		if d.doc.mid() == mid {
			n++
		}
	}
	return n
}

// checkConsoleHeaders: a console page carries the strict CSP, keeps its
// URLs to itself, and is not cached.
func checkConsoleHeaders(t *testing.T, resp *network.Response) {
	t.Helper()
	h := map[string]string{}
	for k, v := range resp.Headers {
		h[strings.ToLower(k)] = fmt.Sprint(v)
	}
	csp := h["content-security-policy"]
	for _, want := range []string{"default-src 'none'", "script-src 'self'", "frame-ancestors 'none'", "form-action 'self'"} {
		if !strings.Contains(csp, want) {
			t.Errorf("Content-Security-Policy %q lacks %s", csp, want)
		}
	}
	// same-origin: no link token leaks to another site, and a form's POST
	// carries its true Origin (under no-referrer it is "null", and the
	// sign-in's same-origin check refuses it).
	if h["referrer-policy"] != "same-origin" {
		t.Errorf("Referrer-Policy %q, want same-origin", h["referrer-policy"])
	}
	if h["cache-control"] != "no-store" {
		t.Errorf("Cache-Control %q, want no-store", h["cache-control"])
	}
}

// newBrowser starts headless Chromium for the test, with its own profile;
// the test's end stops it.
func newBrowser(t *testing.T) context.Context {
	t.Helper()
	profile := t.TempDir() // removed after the browser stops (cleanups run last-in first-out)
	var out bytes.Buffer
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(chromiumPath),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("disable-extensions", true),
		chromedp.Flag("disable-default-apps", true),
		chromedp.Flag("disable-features", "Translate,MediaRouter,OptimizationHints"),
		chromedp.Flag("force-color-profile", "srgb"),
		chromedp.Flag("password-store", "basic"),
		chromedp.Flag("lang", "en-US"),
		chromedp.WindowSize(laptopW, laptopH),
		chromedp.UserDataDir(profile),
		chromedp.CombinedOutput(&out),
	)
	ctx, cancel := chromedp.NewContext(alloc)
	t.Cleanup(func() {
		cancel()
		cancelAlloc()
		if t.Failed() {
			t.Logf("chromium output:\n%s", tailString(out.String(), 40))
		}
	})
	if err := chromedp.Do(ctx); err != nil { // starts the browser, with no deadline
		t.Fatalf("start %s: %v\n%s", chromiumPath, err, out.String())
	}
	return ctx
}

func tailString(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// tab is one browser tab in its own browser context (its own cookies):
// every method fails the test when the browser does.
type tab struct {
	t     *testing.T
	name  string
	ctx   context.Context
	base  string
	shots *shooter

	mu     sync.Mutex
	errors []string // console errors and uncaught exceptions
}

func newTab(t *testing.T, browser context.Context, g *gatewayProc, shots *shooter, name string) *tab {
	t.Helper()
	ctx, cancel := chromedp.NewContext(browser, chromedp.WithNewBrowserContext())
	t.Cleanup(cancel)
	b := &tab{t: t, name: name, ctx: ctx, base: "http://" + g.httpAddr, shots: shots}
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("open the %s tab: %v", name, err)
	}
	b.emulate(laptopW, laptopH, false)
	messages := chromedp.Console(ctx)
	go func() {
		for m, err := range messages {
			if err != nil {
				return
			}
			if m.Type != chromedp.ConsoleError && !m.IsException() {
				continue
			}
			// The 403 and 404 pages the test asks for are logged as failed
			// resources; anything else (a CSP violation, a script error) is
			// a fault of the console.
			if strings.Contains(m.Text, "status of 403") || strings.Contains(m.Text, "status of 404") {
				continue
			}
			b.mu.Lock()
			b.errors = append(b.errors, m.String()+" ("+m.URL+")")
			b.mu.Unlock()
		}
	}()
	return b
}

// do runs steps with a deadline (the tab already runs, so the deadline
// ends only these steps).
func (b *tab) do(what string, steps ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 20*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		b.t.Fatalf("%s: %s: %v (on %s)", b.name, what, err, b.path())
	}
}

func (b *tab) url(path string) string {
	if strings.HasPrefix(path, "http") {
		return path
	}
	return b.base + path
}

// open navigates to path (or a full URL) and returns the final answer.
func (b *tab) open(path string) *network.Response {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 20*time.Second)
	defer cancel()
	resp, err := chromedp.Run(ctx, chromedp.NavigateResponse(b.url(path)))
	if err != nil || resp == nil {
		b.t.Fatalf("%s: open %s: %v", b.name, path, err)
	}
	return resp
}

// submit clicks sel, waits for the page it loads and checks its status.
func (b *tab) submit(sel string, want int) {
	b.t.Helper()
	b.load("click "+sel, chromedp.Click(chromedp.CSS(sel)), want)
}

// submitJS runs a script that loads a page (submits a form it builds)
// and checks the page's status.
func (b *tab) submitJS(script string, want int) {
	b.t.Helper()
	b.load("script", chromedp.Evaluate[chromedp.Void](script), want)
}

func (b *tab) load(what string, action chromedp.Action[chromedp.Void], want int) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 20*time.Second)
	defer cancel()
	from := b.path()
	resp, err := chromedp.RunResponse(ctx, action)
	if err != nil || resp == nil {
		b.t.Fatalf("%s: %s on %s: %v", b.name, what, from, err)
	}
	if int(resp.Status) != want {
		b.t.Fatalf("%s: %s on %s: got %d from %s, want %d\n%s", b.name, what, from, resp.Status, resp.URL, want, b.text("main"))
	}
}

func (b *tab) click(sel string) { b.t.Helper(); b.do("click "+sel, chromedp.Click(chromedp.CSS(sel))) }

// fill sets an input's, textarea's or select's value.
func (b *tab) fill(sel, value string) {
	b.t.Helper()
	b.do("fill "+sel, chromedp.SetValue(chromedp.CSS(sel), value))
}

// eval runs a JavaScript expression in the page (through the DevTools
// protocol, which the CSP does not govern) and returns its string value.
func (b *tab) eval(expr string) string {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 20*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[string](expr))
	if err != nil {
		b.t.Fatalf("%s: evaluate %s: %v", b.name, expr, err)
	}
	return v
}

// jsString is s as a JavaScript string literal.
func jsString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// text is the trimmed text of the first match of sel, "" if none.
func (b *tab) text(sel string) string {
	b.t.Helper()
	return b.eval(`(() => { const e = document.querySelector(` + jsString(sel) + `); return e ? e.innerText.trim() : "" })()`)
}

// count is how many elements match sel.
func (b *tab) count(sel string) int {
	b.t.Helper()
	n, err := strconv.Atoi(b.eval(`String(document.querySelectorAll(` + jsString(sel) + `).length)`))
	if err != nil {
		b.t.Fatal(err)
	}
	return n
}

// path is the page's path and query; "" when the tab has none.
func (b *tab) path() string {
	ctx, cancel := context.WithTimeout(b.ctx, 5*time.Second)
	defer cancel()
	v, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`location.pathname + location.search`))
	return v
}

func (b *tab) wantPath(want string) {
	b.t.Helper()
	if got := b.path(); got != want {
		b.t.Fatalf("%s: on %s, want %s\n%s", b.name, got, want, b.text("main"))
	}
}

func (b *tab) wantNotice(want string) {
	b.t.Helper()
	if got := b.text(".msg.ok"); got != want {
		b.t.Errorf("%s: notice %q on %s, want %q (error: %q)", b.name, got, b.path(), want, b.text(".msg.error"))
	}
}

// reloadUntil reloads the page until cond holds or within passes.
func (b *tab) reloadUntil(within time.Duration, cond func() bool, what string) {
	b.t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			b.t.Fatalf("%s: no %s on %s after %s\n%s", b.name, what, b.path(), within, b.text("main"))
		}
		time.Sleep(200 * time.Millisecond)
		b.open(b.path())
	}
}

// emulate sets the viewport: a laptop, or a phone (mobile, 2x pixels).
func (b *tab) emulate(w, h int64, phone bool) {
	b.t.Helper()
	if phone {
		b.do("phone viewport", chromedp.EmulateViewport(w, h, chromedp.EmulateMobile, chromedp.EmulateTouch, chromedp.EmulateScale(2)))
		return
	}
	b.do("laptop viewport", chromedp.EmulateViewport(w, h))
}

// shot photographs the page: the viewport, or the whole page when full.
// The capture always runs; the file is written under CONSOLE_SCREENSHOTS=1.
func (b *tab) shot(name string, full bool) {
	b.t.Helper()
	var dims struct{ W, H, VW, VH float64 }
	raw := b.eval(`JSON.stringify({W: document.documentElement.scrollWidth, H: document.documentElement.scrollHeight, VW: innerWidth, VH: innerHeight})`)
	if err := json.Unmarshal([]byte(raw), &dims); err != nil {
		b.t.Fatalf("page size %s: %v", raw, err)
	}
	h := dims.VH
	if full {
		h = max(dims.H, dims.VH)
	}
	ctx, cancel := context.WithTimeout(b.ctx, 20*time.Second)
	defer cancel()
	res, err := chromedp.Call(ctx, page.CaptureScreenshot, page.CaptureScreenshotParams{
		Format:                page.CaptureScreenshotFormatPng,
		Clip:                  &page.Viewport{Width: dims.VW, Height: h, Scale: 1},
		CaptureBeyondViewport: new(full),
		FromSurface:           new(true),
	})
	if err != nil {
		b.t.Fatalf("%s: screenshot %s: %v", b.name, name, err)
	}
	b.shots.save(name, res.Data)
}

// checkConsole fails the test on a console error or an uncaught exception
// of the tab (a CSP violation says "Refused to ...").
func (b *tab) checkConsole() {
	b.t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, e := range b.errors {
		b.t.Errorf("%s tab, browser console: %s", b.name, e)
	}
}

// shooter keeps the screenshots: written to docs/console/ only when
// CONSOLE_SCREENSHOTS=1, so that a test run does not rewrite committed
// files.
type shooter struct {
	t     *testing.T
	dir   string
	write bool
	n     int
}

func newShooter(t *testing.T) *shooter {
	dir, err := filepath.Abs(filepath.Join("..", "docs", "console"))
	if err != nil {
		t.Fatal(err)
	}
	sh := &shooter{t: t, dir: dir, write: os.Getenv("CONSOLE_SCREENSHOTS") == "1"}
	if sh.write {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return sh
}

func (sh *shooter) save(name string, png []byte) {
	sh.t.Helper()
	if !bytes.HasPrefix(png, []byte("\x89PNG\r\n\x1a\n")) {
		sh.t.Fatalf("screenshot %s is not a PNG (%d bytes)", name, len(png))
	}
	sh.n++
	if !sh.write {
		return
	}
	path := filepath.Join(sh.dir, name+".png")
	if err := os.WriteFile(path, png, 0o644); err != nil {
		sh.t.Fatal(err)
	}
	sh.t.Logf("wrote %s (%d KB)", path, len(png)/1024)
}
