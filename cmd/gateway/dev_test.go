package main

import (
	"io"
	"testing"

	"github.com/postgate/postgate/internal/config"
)

// TestDevPublicURL: under --dev, PUBLIC_URL follows HTTP_ADDR unless the
// environment or a flag sets it.
func TestDevPublicURL(t *testing.T) {
	t.Chdir(t.TempDir()) // applyDev writes its dev file here

	tests := []struct {
		env  map[string]string
		want string
	}{
		{map[string]string{"HTTP_ADDR": "127.0.0.1:18080"}, "http://127.0.0.1:18080"},
		{map[string]string{"HTTP_ADDR": ":18080"}, "http://localhost:18080"},
		{map[string]string{"HTTP_ADDR": "0.0.0.0:18080"}, "http://localhost:18080"},
		{map[string]string{"HTTP_ADDR": "[::1]:18080"}, "http://[::1]:18080"},
		{map[string]string{}, "http://localhost:8080"},
		{map[string]string{"HTTP_ADDR": ":18080", "PUBLIC_URL": "https://gw.example.com"}, "https://gw.example.com"},
	}
	for _, tt := range tests {
		fs := newFlagSet("serve", io.Discard)
		loader := config.Bind(fs, envFunc(tt.env))
		if err := fs.Parse(nil); err != nil {
			t.Fatal(err)
		}
		if err := applyDev(loader, setIn(fs, envFunc(tt.env))); err != nil {
			t.Fatal(err)
		}
		if got := loader.Get("PUBLIC_URL"); got != tt.want {
			t.Errorf("%v: got PUBLIC_URL %q, want %q", tt.env, got, tt.want)
		}
	}
	// A --public-url flag counts as set too.
	fs := newFlagSet("serve", io.Discard)
	loader := config.Bind(fs, envFunc(map[string]string{"HTTP_ADDR": ":18080"}))
	if err := fs.Parse([]string{"--public-url", "https://flag.example.com"}); err != nil {
		t.Fatal(err)
	}
	if err := applyDev(loader, setIn(fs, envFunc(nil))); err != nil {
		t.Fatal(err)
	}
	if got := loader.Get("PUBLIC_URL"); got != "https://flag.example.com" {
		t.Errorf("with --public-url: got PUBLIC_URL %q", got)
	}
}
