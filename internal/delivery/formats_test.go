package delivery

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/postgate/postgate/internal/tenant"
	"github.com/postgate/postgate/internal/testenv"
)

// --- v1a (Ed25519) ---

// newEd25519 is a fresh key pair the way an endpoint gets one: its private
// key as the gateway parses it, its public key as the tenant reads it.
func newEd25519(t *testing.T) (ed25519.PrivateKey, ed25519.PublicKey) {
	t.Helper()
	secret, public := tenant.NewEd25519Secret()
	key, err := tenant.Ed25519Key(secret)
	if err != nil {
		t.Fatal(err)
	}
	return key, testenv.Ed25519PublicKey(t, public)
}

// TestSignEd25519: one v1a signature per key, in order, each verifying with
// its own whpk_ key over id.timestamp.body; during a rotation a receiver
// that trusts either key alone accepts; any change to what was signed is
// refused.
func TestSignEd25519(t *testing.T) {
	oldKey, oldPub := newEd25519(t)
	newKey, newPub := newEd25519(t)
	body := []byte(`{"id":"evt_1","event":{"text":"caf\u00e9 \/ <b>"}}`)
	const id, ts = "evt_1", int64(1767225601)
	tsHeader := strconv.FormatInt(ts, 10)

	t.Run("one key", func(t *testing.T) {
		h := SignEd25519([]ed25519.PrivateKey{newKey}, id, ts, body)
		if !strings.HasPrefix(h, "v1a,") || strings.Contains(h, " ") {
			t.Fatalf("got %q, want one v1a signature", h)
		}
		if !testenv.VerifyV1a([]ed25519.PublicKey{newPub}, id, tsHeader, body, h) {
			t.Errorf("%q does not verify with the endpoint's public key", h)
		}
		if testenv.VerifyV1a([]ed25519.PublicKey{oldPub}, id, tsHeader, body, h) {
			t.Error("verifies with another endpoint's public key")
		}
		// Ed25519 is deterministic: the header is exactly the signature of
		// the spec's string, built here another way.
		want := "v1a," + base64.StdEncoding.EncodeToString(ed25519.Sign(newKey, fmt.Appendf(nil, "%s.%d.%s", id, ts, body)))
		if h != want {
			t.Errorf("got %q, want %q", h, want)
		}
	})

	t.Run("rotation", func(t *testing.T) {
		h := SignEd25519([]ed25519.PrivateKey{newKey, oldKey}, id, ts, body)
		entries := strings.Split(h, " ")
		if len(entries) != 2 {
			t.Fatalf("got %q, want two space-separated signatures", h)
		}
		for i, pub := range []ed25519.PublicKey{newPub, oldPub} {
			if !testenv.VerifyV1a([]ed25519.PublicKey{pub}, id, tsHeader, body, entries[i]) {
				t.Errorf("signature %d (%q) does not verify with key %d", i, entries[i], i)
			}
			if !testenv.VerifyV1a([]ed25519.PublicKey{pub}, id, tsHeader, body, h) {
				t.Errorf("a receiver trusting only key %d refuses %q", i, h)
			}
		}
	})

	t.Run("tampered", func(t *testing.T) {
		h := SignEd25519([]ed25519.PrivateKey{newKey, oldKey}, id, ts, body)
		trusted := []ed25519.PublicKey{newPub, oldPub}
		for name, c := range map[string]struct {
			id, ts string
			body   []byte
		}{
			"body":      {id, tsHeader, append(bytes.Clone(body), ' ')},
			"id":        {"evt_2", tsHeader, body},
			"timestamp": {id, strconv.FormatInt(ts+1, 10), body},
			"framing":   {id + "." + tsHeader, "", body},
		} {
			if testenv.VerifyV1a(trusted, c.id, c.ts, c.body, h) {
				t.Errorf("changed %s: still verifies", name)
			}
		}
	})

	t.Run("no keys", func(t *testing.T) {
		if h := SignEd25519(nil, id, ts, body); h != "" {
			t.Errorf("got %q, want \"\"", h)
		}
	})
}

// --- meta: signatures ---

// TestMetaSignatures: the headers equal the ones the fixtures' README lists
// for Meta's bodies (computed outside this code), and a receiver following
// Meta's documentation accepts them and refuses a changed body or secret.
func TestMetaSignatures(t *testing.T) {
	secret := []byte(testenv.FixtureSecret)
	for _, c := range []struct{ file, sha256, sha1 string }{
		{"01-postback-basic.json", "sha256=e1fea9e09d91c0b334e440ab1df1dbe0f2cd22dea397c4ec43c8f7d2485eafae", "sha1=97c84bc6f70cf3d26b1658bab68eae2a510ec3ed"},
		{"05-dashboard-test-changes-postback.json", "sha256=8e74bf4ba31a7a146f8189e5e5301bb95044b2ccabe53f5e259678b778ac8d9d", "sha1=59e2a1b904ed2048d3020a3c6d654f4c09395237"},
		{"09-standby-postback.json", "sha256=c859b6941f14eb97fab73d84cefc1967afce2ba2b3ddb0166eeb88d471afe903", "sha1=d34e0e190383ace0e10fbddb137bd30ce3d4709b"},
		{"21-page-feed-change.json", "sha256=f35e945c1bc6ebc2749b56e64b6f2f9625dc5b72efea9617ea41cfda1eb9f89a", "sha1=4e2bf135ff9eb1dd4ff26a218697b57b84059c7b"},
		{"22-empty-entry.json", "sha256=3a51502fc277185a6efc3b6f8884cf8bcf9e1f8733b3e9f31dc9946cb2bec0c7", "sha1=b9e5f649e9721f0c64d79415d06fd2d3a5fdc361"},
	} {
		t.Run(c.file, func(t *testing.T) {
			body := testenv.Fixture(t, c.file)
			s256, s1 := MetaSignatures(secret, body)
			if s256 != c.sha256 {
				t.Errorf("sha256: got %s, want %s", s256, c.sha256)
			}
			if s1 != c.sha1 {
				t.Errorf("sha1: got %s, want %s", s1, c.sha1)
			}
			if !testenv.VerifyHubSignature(secret, body, s256, false) || !testenv.VerifyHubSignature(secret, body, s1, true) {
				t.Errorf("Meta's check refuses %s / %s", s256, s1)
			}
			changed := append(bytes.Clone(body), ' ')
			if testenv.VerifyHubSignature(secret, changed, s256, false) || testenv.VerifyHubSignature(secret, changed, s1, true) {
				t.Error("Meta's check accepts a changed body")
			}
			other := []byte(testenv.FixtureSecret + "x")
			if testenv.VerifyHubSignature(other, body, s256, false) || testenv.VerifyHubSignature(other, body, s1, true) {
				t.Error("Meta's check accepts another secret")
			}
		})
	}
}

// TestMetaSignaturesOfMetaBody: what AppendMetaBody writes, signed with the
// app secret, passes Meta's check; the hex is lower case.
func TestMetaSignaturesOfMetaBody(t *testing.T) {
	secret := []byte("the app's own secret")
	body := AppendMetaBody(nil, "page", "104832957710001", []byte("1767225601546"), 0, "messaging",
		[]byte(`{"sender":{"id":"1"},"postback":{"title":"Caf\u00e9 \/ <b>"}}`))
	s256, s1 := MetaSignatures(secret, body)
	if !testenv.VerifyHubSignature(secret, body, s256, false) || !testenv.VerifyHubSignature(secret, body, s1, true) {
		t.Errorf("Meta's check refuses %s / %s", s256, s1)
	}
	if len(s256) != len("sha256=")+64 || len(s1) != len("sha1=")+40 || s256 != strings.ToLower(s256) || s1 != strings.ToLower(s1) {
		t.Errorf("got %q, %q; want lower-case hex of 32 and 20 bytes", s256, s1)
	}
}

// --- meta: body ---

// metaBody is a meta-format body, read with json.RawMessage so the time and
// the items keep their bytes.
type metaBody struct {
	Object string `json:"object"`
	Entry  []struct {
		ID        string            `json:"id"`
		Time      json.RawMessage   `json:"time"`
		Messaging []json.RawMessage `json:"messaging"`
		Standby   []json.RawMessage `json:"standby"`
		Changes   []json.RawMessage `json:"changes"`
	} `json:"entry"`
}

// checkMetaBody decodes body and fails unless it is exactly one entry with
// one item in source, with the given object, Page, time and item bytes.
func checkMetaBody(t *testing.T, body []byte, object, pageID, time, source string, item []byte) {
	t.Helper()
	if !json.Valid(body) {
		t.Fatalf("not valid JSON: %s", body)
	}
	var got metaBody
	if err := json.Unmarshal(body, &got); err != nil {
		t.Fatalf("decode %s: %v", body, err)
	}
	if got.Object != object {
		t.Errorf("object: got %q, want %q", got.Object, object)
	}
	if len(got.Entry) != 1 {
		t.Fatalf("got %d entries, want 1: %s", len(got.Entry), body)
	}
	e := got.Entry[0]
	if e.ID != pageID {
		t.Errorf("id: got %q, want %q", e.ID, pageID)
	}
	if string(e.Time) != time {
		t.Errorf("time: got %s, want %s", e.Time, time)
	}
	items := map[string][]json.RawMessage{"messaging": e.Messaging, "standby": e.Standby, "changes": e.Changes}
	for name, list := range items {
		if name != source && list != nil {
			t.Errorf("%s present: %s", name, body)
		}
	}
	if list := items[source]; len(list) != 1 || !bytes.Equal(list[0], item) {
		t.Errorf("%s: got %q, want exactly [%s]", source, list, item)
	}
}

// TestAppendMetaBody: object, Page, time and item land where Meta puts them;
// the entry's time is kept verbatim whatever its form, received ms stand in
// when there is none; the item's bytes are untouched; dst is appended to.
func TestAppendMetaBody(t *testing.T) {
	messaging := []byte(`{"sender":{"id":"7081529936124401"},"recipient":{"id":"104832957710001"},"timestamp":1767225601234,"postback":{"mid":"m_1","title":"Caf\u00e9 \u2764\ufe0f","payload":"https:\/\/example.com\/?a=1&b=<2>"}}`)
	changes := []byte(`{"field":"messaging_postbacks","value":{"sender":{"user_ref":"12334"},"recipient":{"id":"23245"},"timestamp":"1767225598","postback":{"title":"TEST CTA","payload":"TEST_PAYLOAD"}}}`)
	pretty := []byte("{\n  \"timestamp\" : 1767225601234,\n\t\"sender\": { \"id\": \"1\" }\n}")
	const received = int64(1767225601999)

	for _, c := range []struct {
		name, object, page, source string
		time                       []byte
		item                       []byte
		wantTime                   string
	}{
		{"messaging, ms time", "page", "104832957710001", "messaging", []byte("1767225601234"), messaging, "1767225601234"},
		{"changes, seconds time", "page", "0", "changes", []byte("1767225600"), changes, "1767225600"},
		{"standby, string time", "page", "104832957710003", "standby", []byte(`"1767225601"`), messaging, `"1767225601"`},
		{"instagram, float time", "instagram", "17841455500000101", "messaging", []byte("1.7672256012E12"), messaging, "1.7672256012E12"},
		{"no time: received ms", "page", "104832957710001", "messaging", nil, messaging, strconv.FormatInt(received, 10)},
		{"empty time: received ms", "page", "104832957710001", "changes", []byte{}, changes, strconv.FormatInt(received, 10)},
		{"pretty-printed item", "page", "104832957710001", "messaging", []byte("1767225601234"), pretty, "1767225601234"},
	} {
		t.Run(c.name, func(t *testing.T) {
			item := bytes.Clone(c.item)
			body := AppendMetaBody(nil, c.object, c.page, c.time, received, c.source, item)
			checkMetaBody(t, body, c.object, c.page, c.wantTime, c.source, c.item)
			if !bytes.Equal(item, c.item) {
				t.Error("the item was modified")
			}
			if !bytes.Contains(body, c.item) {
				t.Error("the item's bytes are not in the body as given")
			}

			prefix := []byte("already here|")
			dst := append(make([]byte, 0, 4096), prefix...)
			got := AppendMetaBody(dst, c.object, c.page, c.time, received, c.source, item)
			if !bytes.Equal(got, append(bytes.Clone(prefix), body...)) {
				t.Errorf("appending to dst: got %s", got)
			}
		})
	}
}

// TestAppendMetaBodyExact: for a one-entry, one-event body in Meta's key
// order, the meta format rebuilds Meta's bytes exactly.
func TestAppendMetaBodyExact(t *testing.T) {
	want := `{"object":"page","entry":[{"id":"104832957710001","time":1767225601546,"messaging":[{"sender":{"id":"7081529936124401"},"recipient":{"id":"104832957710001"},"timestamp":1767225601234,"postback":{"mid":"m_1","title":"Get Started","payload":"GET_STARTED"}}]}]}`
	got := AppendMetaBody(nil, "page", "104832957710001", []byte("1767225601546"), 0, "messaging",
		[]byte(`{"sender":{"id":"7081529936124401"},"recipient":{"id":"104832957710001"},"timestamp":1767225601234,"postback":{"mid":"m_1","title":"Get Started","payload":"GET_STARTED"}}`))
	if string(got) != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
	for _, file := range []string{"01-postback-basic.json", "09-standby-postback.json", "21-page-feed-change.json", "10-message-text.json"} {
		t.Run(file, func(t *testing.T) {
			fixture := testenv.Fixture(t, file)
			events := splitMeta(t, fixture)
			if len(events) != 1 {
				t.Fatalf("got %d events, want 1", len(events))
			}
			e := events[0]
			if got := AppendMetaBody(nil, e.object, e.page, e.time, 0, e.source, e.item); !bytes.Equal(got, fixture) {
				t.Errorf("got  %s\nwant %s", got, fixture)
			}
		})
	}
}

// metaEvent is one item of a Meta body with what the meta format needs.
type metaEvent struct {
	object, page, source string
	time, item           []byte
}

// splitMeta cuts a Meta body into its events, keeping Meta's bytes; a body
// that does not decode has none.
func splitMeta(t *testing.T, body []byte) []metaEvent {
	t.Helper()
	var b metaBody
	if err := json.Unmarshal(body, &b); err != nil {
		return nil
	}
	var out []metaEvent
	for _, e := range b.Entry {
		for source, list := range map[string][]json.RawMessage{"messaging": e.Messaging, "standby": e.Standby, "changes": e.Changes} {
			for _, item := range list {
				out = append(out, metaEvent{b.Object, e.ID, source, e.Time, item})
			}
		}
	}
	return out
}

// TestAppendMetaBodyFixtures: every event of every fixture, Meta's and the
// ones re-serialisation would change, makes a valid body that carries the
// event and its entry's time byte for byte.
func TestAppendMetaBodyFixtures(t *testing.T) {
	files, _ := filepath.Glob(filepath.Join(testenv.FixtureDir(), "*.json"))
	raw, _ := filepath.Glob(filepath.Join("..", "webhook", "testdata", "raw", "*.json"))
	files = append(files, raw...)
	if len(files) < 20 {
		t.Fatalf("found %d fixtures", len(files))
	}
	n := 0
	for _, path := range files {
		fixture, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		for i, e := range splitMeta(t, fixture) {
			t.Run(fmt.Sprintf("%s/%d", filepath.Base(path), i), func(t *testing.T) {
				body := AppendMetaBody(nil, e.object, e.page, e.time, 42, e.source, e.item)
				wantTime := string(e.time)
				if len(e.time) == 0 {
					wantTime = "42"
				}
				checkMetaBody(t, body, e.object, e.page, wantTime, e.source, e.item)
			})
			n++
		}
	}
	if n < 30 {
		t.Errorf("only %d events in the fixtures", n)
	}
}

// metaStrings are values of object and Page id that need escaping, or look
// like they might.
var metaStrings = []string{
	"", "page", "104832957710001", `a"b`, `back\slash`, "new\nline\ttab\r", "\x00\x01\x1f\x7f",
	"<script>&amp;</script>", "caf\u00e9 \u2764\ufe0f \U0001F600", "line\u2028sep\u2029", "bad\xffutf8\xc3",
	"/slash/", "'single'",
}

// TestMetaBodyEscapes: object, Page id and source are written as
// encoding/json writes strings, so the body stays valid JSON and reads back
// (invalid UTF-8 as U+FFFD, like everywhere else).
func TestMetaBodyEscapes(t *testing.T) {
	for _, s := range metaStrings {
		want, _ := json.Marshal(s)
		if got := appendJSONString([]byte("x"), s); string(got) != "x"+string(want) {
			t.Errorf("appendJSONString(%q): got %s, want x%s", s, got, want)
		}
		body := AppendMetaBody(nil, s, s, nil, 1, s, []byte("{}"))
		if !json.Valid(body) {
			t.Fatalf("%q: not valid JSON: %s", s, body)
		}
		var got map[string]any
		if err := json.Unmarshal(body, &got); err != nil {
			t.Fatal(err)
		}
		back := strings.ToValidUTF8(s, "\ufffd")
		entry := got["entry"].([]any)[0].(map[string]any)
		if got["object"] != back || entry["id"] != back || entry[back] == nil {
			t.Errorf("%q: read back %v", s, got)
		}
	}
}

// TestAppendMetaBodyNoAllocs: with room in dst and the ids the gateway
// really has, building a body allocates nothing.
func TestAppendMetaBodyNoAllocs(t *testing.T) {
	item := []byte(`{"sender":{"id":"1"}}`)
	dst := make([]byte, 0, 1024)
	if n := testing.AllocsPerRun(100, func() {
		dst = AppendMetaBody(dst[:0], "page", "104832957710001", []byte("1767225601546"), 0, "messaging", item)
	}); n != 0 {
		t.Errorf("got %v allocations, want 0", n)
	}
}

// FuzzAppendMetaBody: whatever the strings, a body built from a valid JSON
// time and item is valid JSON that reads back with the strings, the time
// and the item's bytes (JSON reads a value without its surrounding
// whitespace).
func FuzzAppendMetaBody(f *testing.F) {
	for _, s := range metaStrings {
		f.Add(s, s, []byte("1767225601234"), "messaging", []byte(`{"a":"\u00e9\/"}`))
	}
	f.Add("page", "0", []byte(`"1767225601"`), "changes", []byte(`{"field":"feed","value":{}}`))
	f.Add("instagram", "1", []byte(nil), "standby", []byte(" [1, 2]\n"))
	f.Fuzz(func(t *testing.T, object, page string, time []byte, source string, item []byte) {
		if !json.Valid(item) || (len(time) > 0 && !json.Valid(time)) {
			t.Skip()
		}
		body := AppendMetaBody(nil, object, page, time, 7, source, item)
		if !json.Valid(body) {
			t.Fatalf("not valid JSON: %q", body)
		}
		var got struct {
			Object string `json:"object"`
			Entry  []map[string]json.RawMessage
		}
		if err := json.Unmarshal(body, &got); err != nil || len(got.Entry) != 1 {
			t.Fatalf("decode %q: %v", body, err)
		}
		if source == "id" || source == "time" {
			return // a key twice: which one a reader keeps is its choice
		}
		e := got.Entry[0]
		wantTime := bytes.Trim(time, " \t\r\n")
		if len(time) == 0 {
			wantTime = []byte("7")
		}
		if !bytes.Equal(e["time"], wantTime) {
			t.Fatalf("time: got %q, want %q", e["time"], wantTime)
		}
		if !utf8.ValidString(object) || !utf8.ValidString(page) || !utf8.ValidString(source) {
			return // they read back as U+FFFD: TestMetaBodyEscapes
		}
		var id string
		if err := json.Unmarshal(e["id"], &id); err != nil || got.Object != object || id != page {
			t.Fatalf("strings: got %q, %q (%v); want %q, %q", got.Object, id, err, object, page)
		}
		var items []json.RawMessage
		if err := json.Unmarshal(e[source], &items); err != nil || len(items) != 1 {
			t.Fatalf("%q: %v, %q", source, err, e[source])
		}
		if !bytes.Equal(items[0], bytes.Trim(item, " \t\r\n")) {
			t.Fatalf("item: got %q, want %q", items[0], item)
		}
	})
}
