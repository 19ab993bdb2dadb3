package api_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"path"
	"regexp"
	"strings"
	"sync"
	"testing"
)

// TestOpenAPIFirstRequestsConcurrent: the document is built on first use;
// requests that arrive together must not race building it (go test -race).
func TestOpenAPIFirstRequestsConcurrent(t *testing.T) {
	h := newHarness(t)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			resp, err := h.server.App().Test(httptest.NewRequest(http.MethodGet, "/admin/v1/openapi.json", nil), -1)
			if err != nil {
				t.Error(err)
				return
			}
			defer resp.Body.Close()
			var doc map[string]any
			if err := json.NewDecoder(resp.Body).Decode(&doc); err != nil || resp.StatusCode != 200 {
				t.Errorf("GET /admin/v1/openapi.json: %d, %v", resp.StatusCode, err)
			}
		})
	}
	wg.Wait()
}

// TestDocsPage: the API reference page at /admin/v1/docs is HTML a browser
// renders with no token and no internet: every script, style and link is a
// same-origin path that this server answers, no script is inline, and the
// Content-Security-Policy allows scripts only from the gateway itself.
func TestDocsPage(t *testing.T) {
	h := newHarness(t)
	r := h.do("GET", "/admin/v1/docs", "", nil)
	if r.status != 200 || !strings.HasPrefix(r.header.Get("Content-Type"), "text/html") {
		t.Fatalf("GET /admin/v1/docs: %d %s, want 200 text/html", r.status, r.header.Get("Content-Type"))
	}
	page := string(r.body)
	csp := r.header.Get("Content-Security-Policy")
	directives := map[string]string{}
	for _, d := range strings.Split(csp, ";") {
		name, value, _ := strings.Cut(strings.TrimSpace(d), " ")
		directives[name] = value
	}
	if directives["default-src"] != "'none'" || directives["script-src"] != "'self'" || directives["connect-src"] != "'self'" {
		t.Errorf("Content-Security-Policy %q: want default-src 'none', script-src 'self', connect-src 'self'", csp)
	}
	if strings.Contains(csp, "http") || strings.Contains(csp, "*") || strings.Contains(csp, "unsafe-eval") {
		t.Errorf("Content-Security-Policy %q allows another origin or eval", csp)
	}
	if r.header.Get("X-Content-Type-Options") != "nosniff" {
		t.Error("no X-Content-Type-Options: nosniff")
	}
	if m := regexp.MustCompile(`(?i)https?:|//[a-z0-9]`).FindString(page); m != "" {
		t.Errorf("the page names another host (%q):\n%s", m, page)
	}
	if regexp.MustCompile(`(?i)<script[^>]*>[^<]+</script>|\son[a-z]+\s*=`).MatchString(page) {
		t.Errorf("the page has inline script:\n%s", page)
	}
	if !strings.Contains(page, `data-spec="/admin/v1/openapi.json"`) {
		t.Error("the page does not render /admin/v1/openapi.json")
	}

	wantType := map[string]string{".js": "text/javascript", ".css": "text/css", ".json": "application/openapi+json"}
	refs := regexp.MustCompile(`(?i)\s(?:src|href)="([^"]*)"`).FindAllStringSubmatch(page, -1)
	scripts := 0
	for _, m := range refs {
		ref := m[1]
		if !strings.HasPrefix(ref, "/") || strings.HasPrefix(ref, "//") {
			t.Errorf("%q is not a same-origin path", ref)
			continue
		}
		a := h.do("GET", ref, "", nil)
		ext := path.Ext(ref)
		if a.status != 200 || !strings.HasPrefix(a.header.Get("Content-Type"), wantType[ext]) || len(a.body) == 0 {
			t.Errorf("GET %s: %d %q (%d bytes), want 200 %s", ref, a.status, a.header.Get("Content-Type"), len(a.body), wantType[ext])
		}
		if ext == ".js" {
			scripts++
		}
		if etag := a.header.Get("ETag"); ext != ".json" {
			req := httptest.NewRequest(http.MethodGet, ref, nil)
			req.Header.Set("If-None-Match", etag)
			if resp, err := h.server.App().Test(req, -1); err != nil || resp.StatusCode != http.StatusNotModified {
				t.Errorf("GET %s with its ETag: %v %v, want 304", ref, resp.StatusCode, err)
			}
		}
	}
	if scripts != 2 {
		t.Errorf("the page loads %d scripts, want the renderer and its start-up file", scripts)
	}
	if a := h.do("POST", "/admin/v1/docs", "", nil); a.status != 405 {
		t.Errorf("POST /admin/v1/docs: %d, want 405", a.status)
	}
}
