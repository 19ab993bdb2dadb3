package redisdb

import (
	"testing"
	"time"
)

func TestBackoff(t *testing.T) {
	var b Backoff
	t0 := time.Unix(1000, 0)
	if b.Down(t0) {
		t.Fatal("a new Backoff is down")
	}
	if !b.Failed(t0) {
		t.Error("the first failure does not begin an outage")
	}
	if b.Failed(t0.Add(100 * time.Millisecond)) {
		t.Error("a failure while down begins another outage (it would be logged twice)")
	}
	if !b.Down(t0.Add(900 * time.Millisecond)) {
		t.Error("not down within the default second after a failure")
	}
	if b.Down(t0.Add(1200 * time.Millisecond)) {
		t.Error("still down past the wait after the last failure")
	}
	b2 := Backoff{Wait: 5 * time.Second}
	b2.Failed(t0)
	if !b2.Down(t0.Add(4 * time.Second)) {
		t.Error("a 5s Backoff is up after 4s")
	}
}
