package api_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
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
