package webhook_test

import (
	"bytes"
	"context"
	stdjson "encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/postgate/postgate/internal/database"
	"github.com/postgate/postgate/internal/event"
	"github.com/postgate/postgate/internal/testenv"
	"github.com/postgate/postgate/internal/webhook"
)

// TestFixtures posts every fixture, as Meta would, on /webhook/{app_id} and
// on /webhook, and checks the outcome the fixtures' README and SPEC give.
func TestFixtures(t *testing.T) {
	tests := []struct {
		file string
		// on /webhook/1001
		outcome  webhook.Outcome
		accepted int
		// on /webhook (shared endpoint)
		sharedOutcome webhook.Outcome
		filtered      int
	}{
		{"01-postback-basic.json", webhook.OutcomeAccepted, 1, webhook.OutcomeAccepted, 0},
		{"02-postback-referral-shortlink.json", webhook.OutcomeAccepted, 1, webhook.OutcomeAccepted, 0},
		{"03-postback-referral-ads.json", webhook.OutcomeAccepted, 1, webhook.OutcomeAccepted, 0},
		{"04-postback-user-ref.json", webhook.OutcomeAccepted, 1, webhook.OutcomeAccepted, 0},
		// The dashboard Test button: Page "0"/23245 belong to nobody; on the
		// app's own path it goes to the app's tenant, on /webhook nowhere.
		{"05-dashboard-test-changes-postback.json", webhook.OutcomeAccepted, 1, webhook.OutcomeUnroutable, 0},
		{"06-batch-three-pages.json", webhook.OutcomeAccepted, 3, webhook.OutcomeAccepted, 0},
		{"07-single-entry-multiple-events.json", webhook.OutcomeAccepted, 1, webhook.OutcomeAccepted, 4},
		{"08-instagram-postback.json", webhook.OutcomeAccepted, 1, webhook.OutcomeAccepted, 0},
		{"09-standby-postback.json", webhook.OutcomeAccepted, 0, webhook.OutcomeAccepted, 1},
		{"10-message-text.json", webhook.OutcomeAccepted, 0, webhook.OutcomeAccepted, 1},
		{"11-message-quick-reply.json", webhook.OutcomeAccepted, 0, webhook.OutcomeAccepted, 1},
		{"12-message-echo.json", webhook.OutcomeAccepted, 0, webhook.OutcomeAccepted, 1},
		{"13-delivery-and-read.json", webhook.OutcomeAccepted, 0, webhook.OutcomeAccepted, 2},
		{"16-referral-existing-thread.json", webhook.OutcomeAccepted, 0, webhook.OutcomeAccepted, 1},
		{"17-handover-pass-thread-control.json", webhook.OutcomeAccepted, 0, webhook.OutcomeAccepted, 1},
		{"18-reaction.json", webhook.OutcomeAccepted, 0, webhook.OutcomeAccepted, 1},
		{"19-optin-checkbox-no-sender.json", webhook.OutcomeAccepted, 0, webhook.OutcomeAccepted, 1},
		{"21-page-feed-change.json", webhook.OutcomeAccepted, 0, webhook.OutcomeAccepted, 1},
		{"22-empty-entry.json", webhook.OutcomeAccepted, 0, webhook.OutcomeUnroutable, 0},
		{"23-policy-enforcement.json", webhook.OutcomeAccepted, 0, webhook.OutcomeAccepted, 1},
		// Both postbacks route by entry.id (SPEC: recipient.id, else entry.id).
		{"25-malformed-missing-recipient.json", webhook.OutcomeAccepted, 2, webhook.OutcomeAccepted, 0},
		{"26-malformed-wrong-types.json", webhook.OutcomeQuarantined, 0, webhook.OutcomeUnroutable, 0},
		{"27-malformed-truncated.json", webhook.OutcomeQuarantined, 0, webhook.OutcomeNotJSON, 0},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			t.Parallel()
			body := fixture(t, tt.file)
			for _, path := range []string{"1001", ""} {
				e := newEnv(t)
				tenantID := e.standard()
				got := e.post(path, body, sign256(fixtureSecret, body))
				want, wantAccepted, wantFiltered := tt.outcome, tt.accepted, tt.filtered
				if path == "" {
					want = tt.sharedOutcome
					if want != webhook.OutcomeAccepted {
						wantAccepted, wantFiltered = 0, 0
					}
				}
				if got.Outcome != want || got.Accepted != wantAccepted || got.Filtered != wantFiltered {
					t.Fatalf("path %q: got outcome %d accepted %d filtered %d (%+v); want outcome %d accepted %d filtered %d",
						path, got.Outcome, got.Accepted, got.Filtered, got, want, wantAccepted, wantFiltered)
				}
				stored := e.events()
				if len(stored) != wantAccepted {
					t.Fatalf("path %q: %d events stored, want %d", path, len(stored), wantAccepted)
				}
				for _, s := range stored {
					if s.TenantID != tenantID {
						t.Errorf("event stored for tenant %s, want %s", s.TenantID, tenantID)
					}
				}
				wantQ := 0
				if got.Outcome == webhook.OutcomeQuarantined {
					wantQ = 1
				}
				if n := e.count(`SELECT count(*) FROM quarantine WHERE tenant_id = $1 AND body = $2`, tenantID, body); n != wantQ {
					t.Errorf("path %q: %d quarantined bodies, want %d", path, n, wantQ)
				}
			}
		})
	}
}

// TestDeliveryBody checks what the tenant will receive for a postback with
// a referral: SPEC's fields, and Meta's event object byte for byte.
func TestDeliveryBody(t *testing.T) {
	e := newEnv(t)
	tenantID := e.standard()
	body := fixture(t, "03-postback-referral-ads.json")
	if res := e.post("1001", body, sign256(fixtureSecret, body)); res.Accepted != 1 {
		t.Fatalf("accepted %d, want 1 (%+v)", res.Accepted, res)
	}
	ev := e.events()[0]
	var got map[string]stdjson.RawMessage
	if err := stdjson.Unmarshal(ev.Body, &got); err != nil {
		t.Fatalf("stored body is not JSON: %v\n%s", err, ev.Body)
	}
	want := map[string]string{
		"type": `"messaging_postbacks"`, "test": `false`, "tenant_id": `"` + tenantID + `"`,
		"app_id": `"1001"`, "page_id": `"` + pageB + `"`, "object": `"page"`, "source": `"messaging"`,
	}
	for k, v := range want {
		if string(got[k]) != v {
			t.Errorf("%s: got %s, want %s", k, got[k], v)
		}
	}
	for _, k := range []string{"id", "sender", "timestamp", "received_at", "postback", "event"} {
		if _, ok := got[k]; !ok {
			t.Errorf("body has no %q", k)
		}
	}
	if !strings.HasPrefix(string(got["id"]), `"evt_`) {
		t.Errorf("id: got %s, want evt_...", got["id"])
	}
	// The event object is Meta's bytes, escapes (\/) included.
	start := bytes.Index(body, []byte(`"messaging":[`)) + len(`"messaging":[`)
	end := bytes.LastIndex(body, []byte(`]}]}`))
	if !bytes.Equal(got["event"], body[start:end]) {
		t.Errorf("event is not byte for byte:\n got %s\nwant %s", got["event"], body[start:end])
	}
	if !bytes.Contains(got["postback"], []byte(`"ad_id":"`)) {
		t.Errorf("postback lost the referral's ad_id: %s", got["postback"])
	}
}

// TestSignatures covers SPEC's rows 2 and 5 and the SHA-1 fallback.
func TestSignatures(t *testing.T) {
	e := newEnv(t)
	a := e.standard()
	e.addApp(a, "3003", "legacy-secret")
	e.exec(`UPDATE apps SET legacy_sha1 = true WHERE app_id = '3003'`)
	e.reload()
	body := fixture(t, "01-postback-basic.json")
	tests := []struct {
		name    string
		app     string
		sig256  string
		sig1    string
		outcome webhook.Outcome
	}{
		{"missing", "1001", "", "", webhook.OutcomeBadSignature},
		{"not hex", "1001", "sha256=" + strings.Repeat("z", 64), "", webhook.OutcomeBadSignature},
		{"short", "1001", "sha256=abcd", "", webhook.OutcomeBadSignature},
		{"wrong prefix", "1001", strings.Replace(sign256(fixtureSecret, body), "sha256=", "sha512=", 1), "", webhook.OutcomeBadSignature},
		{"zeros", "1001", "sha256=" + strings.Repeat("0", 64), "", webhook.OutcomeBadSignature},
		{"other secret", "1001", sign256("another-secret", body), "", webhook.OutcomeBadSignature},
		{"other secret, shared", "", sign256("another-secret", body), "", webhook.OutcomeBadSignature},
		{"unknown app", "999", sign256(fixtureSecret, body), "", webhook.OutcomeBadSignature},
		{"sha1 only, app without fallback", "1001", "", sign1(fixtureSecret, body), webhook.OutcomeBadSignature},
		{"sha1 only, app with fallback", "3003", "", sign1("legacy-secret", body), webhook.OutcomeAccepted},
		{"sha1 wrong, app with fallback", "3003", "", sign1("nope", body), webhook.OutcomeBadSignature},
		{"sha256 present wins over sha1", "3003", sign256("nope", body), sign1("legacy-secret", body), webhook.OutcomeBadSignature},
		{"good", "1001", sign256(fixtureSecret, body), "", webhook.OutcomeAccepted},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := e.ing.Ingest(context.Background(), webhook.Request{AppID: tt.app, Body: body, Signature256: tt.sig256, Signature1: tt.sig1, ReceivedAt: time.Now()})
			if got.Outcome != tt.outcome {
				t.Fatalf("got outcome %d (%q), want %d", got.Outcome, got.Message, tt.outcome)
			}
			if got.Outcome == webhook.OutcomeBadSignature && got.Accepted != 0 {
				t.Fatal("a 401 stored events")
			}
		})
	}
}

// TestSignerRoutesOnlyItsPages: a batch naming Pages of two apps, signed by
// one, stores only the signer's Pages; a Page shared by two apps (two
// tenants) goes to the tenant of whichever app signed.
func TestSignerRoutesOnlyItsPages(t *testing.T) {
	e := newEnv(t)
	a := e.addTenant()
	b := e.addTenant()
	e.addApp(a, "1001", fixtureSecret)
	e.addApp(b, "2002", "secret-of-b")
	e.addPage(a, "1001", pageA, "page")
	e.addPage(b, "2002", pageA, "page") // shared Page
	e.addPage(b, "2002", pageB, "page")
	e.addPage(a, "1001", pageC, "page")
	e.reload()

	body := fixture(t, "06-batch-three-pages.json") // Pages A, B, C
	res := e.post("", body, sign256(fixtureSecret, body))
	if res.Accepted != 2 || res.Unroutable != 1 {
		t.Fatalf("signed by A's app: accepted %d unroutable %d, want 2 and 1 (%+v)", res.Accepted, res.Unroutable, res)
	}
	for _, s := range e.events() {
		if s.TenantID != a || s.PageID == pageB {
			t.Errorf("A's app routed Page %s to tenant %s", s.PageID, s.TenantID)
		}
	}
	one := fixture(t, "01-postback-basic.json") // Page A
	res = e.post("", one, sign256("secret-of-b", one))
	if res.Accepted != 1 {
		t.Fatalf("shared Page signed by B's app: accepted %d, want 1 (%+v)", res.Accepted, res)
	}
	if n := e.count(`SELECT count(*) FROM events WHERE tenant_id = $1 AND page_id = $2`, b, pageA); n != 1 {
		t.Fatalf("tenant B has %d events of the shared Page, want 1", n)
	}
}

// TestDedup: Meta's redelivery is not stored twice, whether Redis still
// remembers the key or was flushed in between (the Postgres key catches it).
func TestDedup(t *testing.T) {
	e := newEnv(t)
	e.standard()
	body := fixture(t, "06-batch-three-pages.json")
	sig := sign256(fixtureSecret, body)
	if res := e.post("1001", body, sig); res.Accepted != 3 {
		t.Fatalf("first delivery: accepted %d, want 3", res.Accepted)
	}
	if res := e.post("1001", body, sig); res.Accepted != 0 || res.Duplicates != 3 {
		t.Fatalf("redelivery: accepted %d duplicates %d, want 0 and 3", res.Accepted, res.Duplicates)
	}
	// Redis alone answers for known events: even with Postgres refusing
	// inserts, the redelivery is a 200 duplicate, not a 503.
	e.waitKeys(3)
	e.exec(`ALTER TABLE events ADD CONSTRAINT refuse CHECK (false) NOT VALID`)
	if res := e.post("1001", body, sig); res.Outcome != webhook.OutcomeAccepted || res.Duplicates != 3 {
		t.Fatalf("redelivery known to Redis: outcome %d duplicates %d, want 200 and 3", res.Outcome, res.Duplicates)
	}
	e.exec(`ALTER TABLE events DROP CONSTRAINT refuse`)
	testenv.DeletePrefix(context.Background(), e.rdb, e.prefix) // Redis lost everything
	if res := e.post("", body, sig); res.Accepted != 0 || res.Duplicates != 3 {
		t.Fatalf("redelivery after a Redis flush: accepted %d duplicates %d, want 0 and 3", res.Accepted, res.Duplicates)
	}
	if n := len(e.events()); n != 3 {
		t.Fatalf("%d events stored, want 3", n)
	}
}

// TestFailedInsertLeavesNoDuplicateMark: when the insert fails (or the
// process dies before the commit), nothing in Redis may turn Meta's retry
// into a duplicate; only a key marked committed is trusted.
func TestFailedInsertLeavesNoDuplicateMark(t *testing.T) {
	e := newEnv(t)
	tenantID := e.standard()
	body := fixture(t, "01-postback-basic.json")
	e.exec(`ALTER TABLE events ADD CONSTRAINT refuse CHECK (false) NOT VALID`)
	if res := e.post("1001", body, sign256(fixtureSecret, body)); res.Outcome != webhook.OutcomeUnavailable {
		t.Fatalf("with inserts failing: outcome %d, want unavailable (503)", res.Outcome)
	}
	if keys, _ := e.rdb.Keys(context.Background(), e.prefix+"*").Result(); len(keys) != 0 {
		t.Fatalf("a failed insert left Redis keys: %v", keys)
	}
	// A key in any state but committed (say, written by an older version
	// or by hand) is not trusted either.
	var mid struct {
		Entry []struct {
			Messaging []struct {
				Postback struct{ Mid string } `json:"postback"`
			} `json:"messaging"`
		} `json:"entry"`
	}
	if err := stdjson.Unmarshal(body, &mid); err != nil {
		t.Fatal(err)
	}
	key := e.prefix + "t:" + tenantID + ":dedup:" + pageA + ":m:" + mid.Entry[0].Messaging[0].Postback.Mid
	e.rdb.Set(context.Background(), key, "p", time.Minute)
	e.exec(`ALTER TABLE events DROP CONSTRAINT refuse`)
	if res := e.post("1001", body, sign256(fixtureSecret, body)); res.Accepted != 1 {
		t.Fatalf("Meta's retry: accepted %d, want 1 (%+v)", res.Accepted, res)
	}
	deadline := time.Now().Add(2 * time.Second)
	for {
		v, _ := e.rdb.Get(context.Background(), key).Result()
		if v == "c" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after the commit the key is %q, want c", v)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if res := e.post("1001", body, sign256(fixtureSecret, body)); res.Accepted != 0 || res.Duplicates != 1 {
		t.Fatalf("redelivery: accepted %d duplicates %d, want 0 and 1", res.Accepted, res.Duplicates)
	}
}

// TestRedisDown: with Redis unreachable the ingress still answers 200 and
// Postgres deduplicates.
func TestRedisDown(t *testing.T) {
	e := newEnv(t)
	e.standard()
	e.rdb = nil
	dead, _ := testenv.Redis(t)
	_ = dead.Close() // a closed client fails every command
	ing, err := webhook.NewIngestor(webhook.Config{KeyPrefix: e.prefix}, e.reg, event.NewStore(e.db), dead, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go ing.Run(ctx)
	e.ing = ing
	body := fixture(t, "06-batch-three-pages.json")
	sig := sign256(fixtureSecret, body)
	if res := e.post("1001", body, sig); res.Outcome != webhook.OutcomeAccepted || res.Accepted != 3 {
		t.Fatalf("Redis down: outcome %d accepted %d, want accepted 3", res.Outcome, res.Accepted)
	}
	if res := e.post("1001", body, sig); res.Accepted != 0 || res.Duplicates != 3 {
		t.Fatalf("Redis down, redelivery: accepted %d duplicates %d, want 0 and 3", res.Accepted, res.Duplicates)
	}
}

// TestPostgresDown: no 200 without a commit.
func TestPostgresDown(t *testing.T) {
	e := newEnv(t)
	e.standard()
	e.db.Pool.Close() // every query now fails
	body := fixture(t, "01-postback-basic.json")
	if res := e.post("1001", body, sign256(fixtureSecret, body)); res.Outcome != webhook.OutcomeUnavailable {
		t.Fatalf("outcome %d, want unavailable (503)", res.Outcome)
	}
}

// TestVerifySubscription covers the GET handshake.
func TestVerifySubscription(t *testing.T) {
	e := newEnv(t)
	a := e.standard()
	e.addApp(a, "2002", "s2")
	e.reload()
	tests := []struct {
		app, mode, token string
		want             bool
	}{
		{"1001", "subscribe", "vt-1001", true},
		{"", "subscribe", "vt-1001", true},
		{"", "subscribe", "vt-2002", true},
		{"1001", "subscribe", "vt-2002", false}, // another app's token
		{"1001", "unsubscribe", "vt-1001", false},
		{"1001", "subscribe", "", false},
		{"", "subscribe", "nope", false},
		{"404", "subscribe", "vt-1001", false},
	}
	for _, tt := range tests {
		if got := e.ing.VerifySubscription(tt.app, tt.mode, tt.token); got != tt.want {
			t.Errorf("VerifySubscription(%q, %q, %q) = %v, want %v", tt.app, tt.mode, tt.token, got, tt.want)
		}
	}
}

// TestIDsThatAreNotText: a mid, or a test event's Page id, that Postgres
// cannot store as text (invalid UTF-8, NUL) must not fail the group
// commit, which every request sharing it would answer 503 (and Meta would
// retry the poison body until it disables the app). Such a mid falls back
// to the hashed key; such a Page makes the event invalid.
func TestIDsThatAreNotText(t *testing.T) {
	e := newEnv(t)
	e.standard()
	postback := func(entry, page, mid string) []byte {
		return []byte(`{"object":"page","entry":[{"id":"` + entry + `","time":1767225601546,"messaging":[{"sender":{"id":"7"},` +
			`"recipient":{"id":"` + page + `"},"timestamp":1767225601234,"postback":{"mid":"` + mid + `","title":"t","payload":"p"}}]}]}`)
	}
	tests := []struct {
		name     string
		body     []byte
		accepted int
	}{
		{"mid with invalid UTF-8", postback(pageA, pageA, "m_bad\xff"), 1},
		{"mid with an escaped NUL", postback(pageA, pageA, `m_nul\u0000`), 1},
		{"test event Page with an escaped NUL", postback("0", `\u0000`, "m_test_nul"), 0},
		{"test event Page with invalid UTF-8", postback("0", "\xfe", "m_test_bad"), 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sig := sign256(fixtureSecret, tt.body)
			res := e.post("1001", tt.body, sig)
			if res.Outcome != webhook.OutcomeAccepted || res.Accepted != tt.accepted {
				t.Fatalf("got outcome %d, accepted %d; want 200 and %d", res.Outcome, res.Accepted, tt.accepted)
			}
			if tt.accepted == 0 {
				return
			}
			if res := e.post("1001", tt.body, sig); res.Accepted != 0 || res.Duplicates != 1 {
				t.Fatalf("redelivery: accepted %d duplicates %d, want 0 and 1", res.Accepted, res.Duplicates)
			}
		})
	}
}

// TestWakesDeliveryWorkers: a commit that stores new events notifies
// database.DeliveriesChannel (the workers claim at once instead of at
// their next poll); a redelivery that stores nothing does not.
func TestWakesDeliveryWorkers(t *testing.T) {
	e := newEnv(t)
	e.standard()
	ctx := context.Background()
	conn, err := e.db.Pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, "LISTEN "+database.DeliveriesChannel); err != nil {
		t.Fatal(err)
	}
	defer func() { _, _ = conn.Exec(ctx, "UNLISTEN *") }()
	notified := func(within time.Duration) bool {
		wctx, cancel := context.WithTimeout(ctx, within)
		defer cancel()
		_, err := conn.Conn().WaitForNotification(wctx)
		return err == nil
	}
	body := fixture(t, "06-batch-three-pages.json")
	sig := sign256(fixtureSecret, body)
	if res := e.post("1001", body, sig); res.Accepted != 3 {
		t.Fatalf("accepted %d, want 3", res.Accepted)
	}
	if !notified(5 * time.Second) {
		t.Fatal("no notification after new events were stored")
	}
	for notified(200 * time.Millisecond) { // coalesced extras, if any
	}
	if res := e.post("1001", body, sig); res.Duplicates != 3 {
		t.Fatalf("redelivery: duplicates %d, want 3", res.Duplicates)
	}
	if notified(500 * time.Millisecond) {
		t.Error("a redelivery that stored nothing notified the workers")
	}
}
