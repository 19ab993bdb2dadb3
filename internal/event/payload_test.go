package event

import (
	"encoding/json"
	"testing"
	"time"
)

func TestPayload(t *testing.T) {
	id := [16]byte{0x01, 0x92, 0xf0, 0xc2, 15: 0x01}
	p := Payload{
		ID: id, Type: TypePostbacks, TenantID: "0192f0c2-0000-7000-8000-000000000000", AppID: "1001",
		PageID: "104832957710000", Object: "page", Source: "messaging", SenderID: "9\"<>", HasSenderID: true,
		TimestampMS: 1767225601234, ReceivedAt: time.Date(2026, 1, 1, 0, 0, 1, 500_000_000, time.UTC),
		Postback: []byte(`{"title":"T","payload":"P"}`), Event: []byte(`{"sender":{"id":9},"postback":{"title":"T"}}`),
	}
	got := string(p.AppendJSON(nil))
	want := `{"id":"evt_0192f0c2000000000000000000000001","type":"messaging_postbacks","test":false,` +
		`"tenant_id":"0192f0c2-0000-7000-8000-000000000000","app_id":"1001","page_id":"104832957710000",` +
		`"object":"page","source":"messaging","sender":{"id":"9\"\u003c\u003e"},"timestamp":1767225601234,` +
		`"received_at":"2026-01-01T00:00:01.5Z","postback":{"title":"T","payload":"P"},` +
		`"event":{"sender":{"id":9},"postback":{"title":"T"}}}`
	if got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
	if !json.Valid([]byte(got)) {
		t.Error("not valid JSON")
	}
	p.HasSenderID, p.SenderRef, p.HasSenderRef, p.Postback = false, "ref\x00", true, nil
	var v struct {
		Sender   map[string]string `json:"sender"`
		Postback json.RawMessage   `json:"postback"`
	}
	if err := json.Unmarshal(p.AppendJSON(nil), &v); err != nil || v.Sender["user_ref"] != "ref\x00" || v.Postback != nil {
		t.Errorf("user_ref sender without postback: got %+v, %v", v, err)
	}
}

func TestIDs(t *testing.T) {
	id, err := ParseID("evt_0190a8a0000070008000000000000001")
	if err != nil {
		t.Fatal(err)
	}
	if got := FormatID(id); got != "evt_0190a8a0000070008000000000000001" {
		t.Errorf("round trip: got %s", got)
	}
	if got := string(AppendID(nil, id)); got != FormatID(id) {
		t.Errorf("AppendID: got %s, want %s", got, FormatID(id))
	}
	for _, bad := range []string{"", "evt_", "evt_xyz", "qrn_0190a8a0000070008000000000000001", "evt_0190a8a0-0000-7000-8000-000000000001", "evt_0190A8A0000070008000000000000001x"} {
		if _, err := ParseID(bad); err == nil {
			t.Errorf("ParseID(%q): got no error", bad)
		}
	}
	q, err := ParseQuarantineID(FormatQuarantineID(id))
	if err != nil || q != id {
		t.Errorf("quarantine id round trip: got %s, %v", q, err)
	}
}

func BenchmarkPayload(b *testing.B) {
	p := Payload{
		ID: [16]byte{1}, Type: TypePostbacks, TenantID: "0192f0c2-0000-7000-8000-000000000000", AppID: "1001",
		PageID: "104832957710000", Object: "page", Source: "messaging", SenderID: "6789012345678901", HasSenderID: true,
		TimestampMS: 1767225601234, ReceivedAt: time.Now(), Postback: []byte(`{"mid":"m_1","title":"Get Started","payload":"GET_STARTED"}`),
		Event: []byte(`{"sender":{"id":"6789012345678901"},"recipient":{"id":"104832957710000"},"timestamp":1767225601234,"postback":{"mid":"m_1","title":"Get Started","payload":"GET_STARTED"}}`),
	}
	var buf []byte
	b.ReportAllocs()
	for b.Loop() {
		buf = p.AppendJSON(buf[:0])
	}
}
