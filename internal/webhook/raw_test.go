package webhook_test

import (
	"bytes"
	stdjson "encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/postgate/postgate/internal/webhook"
)

// rawFixtureDir holds signed bodies whose bytes re-serialised JSON would
// change (see its README).
const rawFixtureDir = "testdata/raw"

// TestSignedOverRawBytes: the signature is checked over the bytes Meta
// sent, not over compacted or re-marshalled JSON: bodies with whitespace,
// keys in an order Go would not write and escapes Go would rewrite are
// accepted on both endpoints, and every stored event is Meta's event
// object byte for byte.
func TestSignedOverRawBytes(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(rawFixtureDir, "*.json"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no fixtures under %s (%v)", rawFixtureDir, err)
	}
	compactChanges := 0
	for _, file := range files {
		body, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		// A fixture that Go would write as it is tests nothing here.
		if bytes.Equal(remarshal(t, body), body) {
			t.Fatalf("%s: re-marshalling leaves it unchanged; it cannot tell raw bytes from re-serialised JSON", file)
		}
		var compact bytes.Buffer
		if err := stdjson.Compact(&compact, body); err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		if !bytes.Equal(compact.Bytes(), body) {
			compactChanges++
		}
		want := metaEvents(t, body)
		t.Run(filepath.Base(file), func(t *testing.T) {
			t.Parallel()
			for _, path := range []string{"1001", ""} {
				e := newEnv(t)
				e.standard()
				res := e.post(path, body, sign256(fixtureSecret, body))
				if res.Outcome != webhook.OutcomeAccepted || res.Accepted != len(want) {
					t.Fatalf("path %q: got outcome %d (%q) accepted %d, want 200 with %d events", path, res.Outcome, res.Message, res.Accepted, len(want))
				}
				stored := e.events()
				if len(stored) != len(want) {
					t.Fatalf("path %q: %d events stored, want %d", path, len(stored), len(want))
				}
				used := make([]bool, len(want))
			events:
				for _, s := range stored {
					var doc map[string]stdjson.RawMessage
					if err := stdjson.Unmarshal(s.Body, &doc); err != nil {
						t.Fatalf("path %q: stored body is not JSON: %v\n%s", path, err, s.Body)
					}
					for i, w := range want {
						if !used[i] && bytes.Equal(doc["event"], w) {
							used[i] = true
							continue events
						}
					}
					t.Errorf("path %q: stored event is not one of Meta's event objects byte for byte:\n got %s\nwant one of %q", path, doc["event"], want)
				}
			}
		})
	}
	if compactChanges == 0 {
		t.Errorf("no fixture under %s has whitespace that compacting removes", rawFixtureDir)
	}
}

// metaEvents returns the event objects of a body, each exactly as it
// stands in it: messaging[] items, and the value of each
// messaging_postbacks changes[] item. (The fixtures hold only postbacks,
// which every tenant takes.)
func metaEvents(t *testing.T, body []byte) [][]byte {
	t.Helper()
	var doc struct {
		Entry []struct {
			Messaging []stdjson.RawMessage `json:"messaging"`
			Changes   []struct {
				Field string             `json:"field"`
				Value stdjson.RawMessage `json:"value"`
			} `json:"changes"`
		} `json:"entry"`
	}
	if err := stdjson.Unmarshal(body, &doc); err != nil {
		t.Fatalf("fixture is not JSON: %v", err)
	}
	var out [][]byte
	for _, e := range doc.Entry {
		for _, m := range e.Messaging {
			out = append(out, m)
		}
		for _, c := range e.Changes {
			if c.Field == "messaging_postbacks" {
				out = append(out, c.Value)
			}
		}
	}
	for _, raw := range out {
		if !bytes.Contains(body, raw) {
			t.Fatalf("event %s is not a slice of the body", raw)
		}
	}
	return out
}

// remarshal is body decoded and encoded again by encoding/json.
func remarshal(t *testing.T, body []byte) []byte {
	t.Helper()
	d := stdjson.NewDecoder(bytes.NewReader(body))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		t.Fatalf("fixture is not JSON: %v", err)
	}
	b, err := stdjson.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
