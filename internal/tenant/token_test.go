package tenant_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/postgate/postgate/internal/tenant"
)

var tokenSecret = []byte(strings.Repeat("k", 32))

func testTokens(t *testing.T) *tenant.Tokens {
	t.Helper()
	tokens, err := tenant.NewTokens(tenant.TokenConfig{Secret: tokenSecret, Issuer: "postgate", Audience: "postgate-admin"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return tokens
}

// TestVerifyNumericDates: exp, iat and nbf are NumericDates, JSON numbers
// (RFC 7519 section 2). jwt-go also reads a string holding a number; a
// token that spells exp "4102444800" was made by something other than
// this gateway and is refused.
func TestVerifyNumericDates(t *testing.T) {
	tokens := testTokens(t)
	now := time.Now()
	exp := now.Add(time.Hour).Unix()
	tests := []struct {
		name string
		mod  func(jwt.MapClaims)
		ok   bool
	}{
		{"numbers", nil, true},
		{"exp a string", func(c jwt.MapClaims) { c["exp"] = jwt.NewNumericDate(time.Unix(exp, 0)).String() }, false},
		{"exp a quoted number", func(c jwt.MapClaims) { c["exp"] = "4102444800" }, false},
		{"exp null", func(c jwt.MapClaims) { c["exp"] = nil }, false},
		{"iat a string", func(c jwt.MapClaims) { c["iat"] = "1767225600" }, false},
		{"nbf a string", func(c jwt.MapClaims) { c["nbf"] = "1767225600" }, false},
		{"nbf a number", func(c jwt.MapClaims) { c["nbf"] = now.Add(-time.Minute).Unix() }, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := jwt.MapClaims{"sub": "x", "role": "admin", "iss": "postgate", "aud": "postgate-admin", "iat": now.Unix(), "exp": exp}
			if tt.mod != nil {
				tt.mod(c)
			}
			tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString(tokenSecret)
			if err != nil {
				t.Fatal(err)
			}
			_, err = tokens.Verify(tok)
			if got := err == nil; got != tt.ok {
				t.Fatalf("Verify: got err %v, want ok=%v", err, tt.ok)
			}
			if err != nil && !errors.Is(err, tenant.ErrBadToken) {
				t.Errorf("got %v, want ErrBadToken", err)
			}
		})
	}
}

// TestIssueTenantID: a tenant token names a tenant by its id, a UUID, in
// the lowercase form the admin API compares with; anything else would
// mint a token that reaches nothing.
func TestIssueTenantID(t *testing.T) {
	tokens := testTokens(t)
	for _, bad := range []string{"nope", "t-1", "0196f1c2-0000-7000-8000", " 0196f1c2-0000-7000-8000-000000000001"} {
		if _, _, err := tokens.Issue("x", tenant.RoleTenant, bad, time.Hour); !errors.Is(err, tenant.ErrInvalid) || !strings.Contains(err.Error(), "UUID") {
			t.Errorf("Issue for tenant %q: got %v, want ErrInvalid naming a UUID", bad, err)
		}
	}
	tok, _, err := tokens.Issue("x", tenant.RoleTenant, "0196F1C2-0000-7000-8000-00000000000A", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	p, err := tokens.Verify(tok)
	if err != nil {
		t.Fatal(err)
	}
	if want := "0196f1c2-0000-7000-8000-00000000000a"; p.TenantID != want {
		t.Errorf("got tenant_id %q, want %q", p.TenantID, want)
	}
}
