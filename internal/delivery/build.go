package delivery

import (
	"crypto/ed25519"
	"encoding/json"
	"strconv"
	"time"

	"github.com/postgate/postgate/internal/event"
	"github.com/postgate/postgate/internal/tenant"
)

// request builds the signed request of a delivery of j to e at now, in
// e's format, or names why it cannot be sent now (a deferral reason): no
// signing key, or for the Meta format no secret of the event's app.
func (w *Worker) request(e *tenant.EndpointInfo, j job, now time.Time) (request, string) {
	if e.Format == tenant.FormatMeta {
		app, ok := w.reg.App(j.AppID)
		if !ok || app.TenantID != j.TenantID {
			// Deleted, or since registered by another tenant: its secret
			// is not this tenant's to sign with.
			return request{}, "no_app_secret"
		}
		body, err := MetaBodyOf(j)
		if err != nil {
			// The stored body is the gateway's own JSON: this cannot
			// happen short of a corrupt row; do not send it.
			return request{}, "bad_body"
		}
		return metaRequest(e.URL, body, app.Secret, event.FormatID(j.ID), j.Number, now), ""
	}
	return standardRequest(e, event.FormatID(j.ID), j.Body, now)
}

// standardRequest is a Standard Webhooks request: webhook-id,
// webhook-timestamp and webhook-signature (v1 HMAC or v1a Ed25519, one
// signature per key valid at now).
func standardRequest(e *tenant.EndpointInfo, msgID string, body []byte, now time.Time) (request, string) {
	var sig string
	if e.Signature == tenant.SignatureEd25519 {
		var keys [2]ed25519.PrivateKey
		k := e.Ed25519Keys(now, keys[:0])
		if len(k) == 0 {
			return request{}, "no_signing_key"
		}
		sig = SignEd25519(k, msgID, now.Unix(), body)
	} else {
		var keys [2][]byte
		k := e.SigningKeys(now, keys[:0])
		if len(k) == 0 {
			return request{}, "no_signing_key"
		}
		sig = Sign(k, msgID, now.Unix(), body)
	}
	return request{url: e.URL, body: body, at: now, header: [][2]string{
		{"webhook-id", msgID},
		{"webhook-timestamp", strconv.FormatInt(now.Unix(), 10)},
		{"webhook-signature", sig},
	}}, ""
}

// metaRequest is a request in Meta's own format: the body signed with the
// app's secret as Meta signs it (SHA-256 and SHA-1), and the gateway's
// event id and attempt number.
func metaRequest(url string, body, appSecret []byte, eventID string, attempt int, now time.Time) request {
	sha256, sha1 := MetaSignatures(appSecret, body)
	return request{url: url, body: body, at: now, header: [][2]string{
		{"X-Hub-Signature-256", sha256},
		{"X-Hub-Signature", sha1},
		{"X-Postgate-Event-Id", eventID},
		{"X-Postgate-Attempt", strconv.Itoa(attempt)},
	}}
}

// standardFields are the fields of a stored standard body that the Meta
// format needs.
type standardFields struct {
	Type   string          `json:"type"`
	Object string          `json:"object"`
	PageID string          `json:"page_id"`
	Source string          `json:"source"`
	Event  json.RawMessage `json:"event"`
}

// MetaBodyOf is the Meta-format body of a claimed delivery: its Page's
// entry with its one item, exactly as Meta sent it (a changes[] item
// whole, any other the standard body's "event", which is Meta's bytes).
// The gateway's own postgate.health event has no Meta form: its body is
// the gateway's JSON, signed like the rest.
func MetaBodyOf(j *event.Claimed) ([]byte, error) {
	var f standardFields
	if err := json.Unmarshal(j.Body, &f); err != nil {
		return nil, err
	}
	if f.Type == event.TypeHealth {
		return j.Body, nil
	}
	item := []byte(f.Event)
	switch {
	case j.Item != nil:
		item, f.Source = j.Item, "changes"
	case f.Source == "changes":
		// Accepted before the gateway kept changes[] items: the item is
		// rebuilt around Meta's value, named by the event's type.
		var typ struct {
			Type string `json:"type"`
		}
		_ = json.Unmarshal(j.Body, &typ)
		item = append(append(appendJSONString([]byte(`{"field":`), typ.Type), `,"value":`...), f.Event...)
		item = append(item, '}')
	}
	return AppendMetaBody(make([]byte, 0, len(item)+128), f.Object, f.PageID, j.EntryTime, j.ReceivedAt.UnixMilli(), f.Source, item), nil
}
