package webhook

import (
	"context"
	stdjson "encoding/json"
	"github.com/google/uuid"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/postgate/postgate/internal/tenant"
	"github.com/postgate/postgate/internal/testenv"
)

// seedFixtures adds every signed fixture: Meta's shapes (testdata/messenger)
// and the bodies that re-serialised JSON would change (testdata/raw).
func seedFixtures(f *testing.F, add func(body []byte)) {
	f.Helper()
	var files []string
	for _, dir := range []string{testenv.FixtureDir(), "testdata/raw"} {
		fs, _ := filepath.Glob(filepath.Join(dir, "*.json"))
		if len(fs) == 0 {
			f.Fatalf("no fixtures under %s", dir)
		}
		files = append(files, fs...)
	}
	for _, p := range files {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		add(b)
	}
}

// FuzzParse: any body either parses into events whose Raw bytes are valid
// JSON taken from the body, or fails with one of the parse errors; it
// never panics.
func FuzzParse(f *testing.F) {
	seedFixtures(f, func(b []byte) { f.Add(b) })
	f.Add([]byte(`[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]`))
	f.Add([]byte(`{"object":"page","entry":[{"id":1e400,"messaging":[{"sender":{"id":-1}}]}]}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		env, err := Parse(body)
		if err != nil {
			if err != ErrNotJSON && err != ErrTooDeep && err != ErrShape {
				t.Fatalf("unexpected error %v", err)
			}
			return
		}
		for _, e := range env.Entries {
			for _, ev := range e.Events {
				if ev.Err == nil && len(ev.Raw) > 0 && !stdjson.Valid(ev.Raw) {
					t.Fatalf("event raw is not JSON: %q", ev.Raw)
				}
			}
		}
	})
}

// fakeRouting routes the fixtures' Pages to one tenant's app "1001".
type fakeRouting struct{ app *tenant.AppKeys }

func (f fakeRouting) App(id string) (*tenant.AppKeys, bool) { return f.app, id == f.app.AppID }
func (f fakeRouting) AppByVerifyToken(string) (*tenant.AppKeys, bool) {
	return nil, false
}
func (f fakeRouting) Routes(page string) []tenant.Route {
	if len(page) == 15 {
		return []tenant.Route{{PageID: page, AppID: "1001", TenantID: "t"}}
	}
	return nil
}
func (f fakeRouting) Route(page, app string) (tenant.Route, bool) {
	r := f.Routes(page)
	return tenant.Route{PageID: page, AppID: "1001", TenantID: "t"}, len(r) == 1 && app == "1001"
}
func (f fakeRouting) Tenant(string) (*tenant.TenantInfo, bool) {
	return &tenant.TenantInfo{ID: "t", Endpoints: []*tenant.EndpointInfo{
		tenant.NewEndpointInfo(uuid.Nil, "t", "https://example.com/", []string{"*"}, nil, true)}}, true
}

// fuzzIngestor is an Ingestor whose commits succeed in memory and whose
// quarantine is never reached (the fuzzed bodies go to /webhook).
func fuzzIngestor(t testing.TB) *Ingestor {
	in := &Ingestor{
		reg:     fakeRouting{app: &tenant.AppKeys{AppID: "1001", TenantID: "t", Secret: []byte(testenv.FixtureSecret)}},
		log:     nil,
		m:       newMetrics(prometheus.NewRegistry()),
		commits: make(chan *commitReq, 16),
	}
	in.cfg.defaults()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case req := <-in.commits:
				req.done <- commitResult{inserted: len(req.rows)}
			}
		}
	}()
	return in
}

// FuzzSignature: arbitrary headers and bodies through the shared endpoint
// never panic and never produce a 5xx; a correctly signed body is never
// refused as a bad signature, a wrongly signed one never accepted.
func FuzzSignature(f *testing.F) {
	seedFixtures(f, func(b []byte) { f.Add(b, "sha256=", true) })
	f.Add([]byte(`{}`), "sha256=zz", false)
	f.Add([]byte(`{"object":"page","entry":[{"id":"104832957710001"}]}`), "sha1=00", false)
	in := fuzzIngestor(f)
	in.log = discardLogger()
	f.Fuzz(func(t *testing.T, body []byte, header string, signIt bool) {
		if signIt {
			header = testenv.SignMeta(testenv.FixtureSecret, body)
		}
		res := in.Ingest(context.Background(), Request{Body: body, Signature256: header, ReceivedAt: time.Now()})
		if res.Outcome == OutcomeUnavailable {
			t.Fatalf("5xx for body %q", body)
		}
		if _, ok := ParseSignature256(header); !ok && res.Outcome != OutcomeBadSignature {
			t.Fatalf("malformed header %q gave outcome %d", header, res.Outcome)
		}
		if signIt && res.Outcome == OutcomeBadSignature {
			t.Fatalf("a correctly signed body was refused: %q", body)
		}
		if !signIt && res.Outcome == OutcomeAccepted && res.Accepted > 0 {
			if header != testenv.SignMeta(testenv.FixtureSecret, body) {
				t.Fatalf("events accepted under a wrong signature %q", header)
			}
		}
	})
}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }
