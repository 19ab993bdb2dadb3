package tenant

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/postgate/postgate/internal/database"
	"github.com/postgate/postgate/internal/secrets"
	"github.com/postgate/postgate/internal/testenv"
)

// TestRowsMatchSchema proves every GORM row model of the package matches
// the migrated schema.
func TestRowsMatchSchema(t *testing.T) {
	testenv.RowsMatchSchema(t, testenv.Postgres(t), map[reflect.Type][]string{
		reflect.TypeFor[textArray](): {"_text", "text[]"},
	}, &tenantRow{}, &appRow{}, &pageRow{})
}

func newKeyring(t *testing.T, previous []byte) (*secrets.Keyring, []byte) {
	t.Helper()
	k := make([]byte, 32)
	_, _ = rand.Read(k)
	ring, err := secrets.NewKeyring(k, previous)
	if err != nil {
		t.Fatal(err)
	}
	return ring, k
}

// TestRekey: secrets sealed under key A, rekeyed with current B and
// previous A, then open with a keyring that holds only B.
func TestRekey(t *testing.T) {
	ctx := context.Background()
	db := testenv.Postgres(t)
	store := NewStore(db)
	ringA, keyA := newKeyring(t, nil)
	svcA := newService(t, store, ringA)

	tn, signing, err := svcA.CreateTenant(ctx, TenantInput{Name: "acme", CallbackURL: "https://hooks.example.com/"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := svcA.RegisterApp(ctx, tn.ID, AppInput{AppID: "1", AppSecret: "first"}); err != nil {
		t.Fatal(err)
	}
	if _, err := svcA.UpdateApp(ctx, tn.ID, "1", AppPatch{AppSecret: ptr("second")}); err != nil {
		t.Fatal(err)
	}
	if _, err := svcA.RegisterApp(ctx, tn.ID, AppInput{AppID: "2", AppSecret: "other"}); err != nil {
		t.Fatal(err)
	}
	if _, err := svcA.RegisterPage(ctx, tn.ID, PageInput{PageID: "77", AppID: "2", AccessToken: "EAAPageToken"}); err != nil {
		t.Fatal(err)
	}
	if _, err := svcA.RegisterPage(ctx, tn.ID, PageInput{PageID: "78", AppID: "2"}); err != nil {
		t.Fatal(err)
	}

	ringB, keyB := newKeyring(t, keyA)
	counts, err := store.Rekey(ctx, ringB)
	if err != nil {
		t.Fatal(err)
	}
	want := []RekeyCount{
		{Column: "endpoints.signing_secret", Rekeyed: 1},
		{Column: "endpoints.previous_signing_secret"},
		{Column: "apps.secret", Rekeyed: 2},
		{Column: "apps.previous_secret", Rekeyed: 1},
		{Column: "pages.access_token", Rekeyed: 1},
	}
	if !slices.Equal(counts, want) {
		t.Errorf("first rekey: got %+v, want %+v", counts, want)
	}
	// A second run finds everything current.
	counts, err = store.Rekey(ctx, ringB)
	if err != nil {
		t.Fatal(err)
	}
	if counts[0].Current != 1 || counts[2].Current != 2 || counts[3].Current != 1 || counts[2].Rekeyed != 0 || counts[4].Current != 1 {
		t.Errorf("second rekey: got %+v, want everything current", counts)
	}

	onlyB, err := secrets.NewKeyring(keyB, nil)
	if err != nil {
		t.Fatal(err)
	}
	open := func(query, binding, want string, args ...any) {
		t.Helper()
		var ct []byte
		if err := db.Pool.QueryRow(ctx, query, args...).Scan(&ct); err != nil {
			t.Fatal(err)
		}
		got, err := onlyB.Open(ct, binding)
		if err != nil || string(got) != want {
			t.Errorf("open %s with only key B: got %v, want the secret", binding, err)
		}
	}
	open(`SELECT signing_secret FROM endpoints WHERE id = $1`, SigningSecretBinding(tn.DefaultEndpointID.String()), signing, tn.DefaultEndpointID)
	open(`SELECT secret FROM apps WHERE app_id = '1'`, AppSecretBinding("1"), "second")
	open(`SELECT previous_secret FROM apps WHERE app_id = '1'`, AppPreviousSecretBinding("1"), "first")
	open(`SELECT secret FROM apps WHERE app_id = '2'`, AppSecretBinding("2"), "other")
	open(`SELECT access_token FROM pages WHERE page_id = '77'`, PageTokenBinding("77", "2"), "EAAPageToken")

	// A keyring that cannot open a secret changes nothing and says which row.
	ringC, _ := newKeyring(t, nil)
	if _, err := store.Rekey(ctx, ringC); !errors.Is(err, secrets.ErrDecrypt) || !strings.Contains(err.Error(), "endpoints.signing_secret") {
		t.Errorf("rekey with an unrelated key: got %v, want ErrDecrypt naming the column", err)
	}
}

func ptr[T any](v T) *T { return &v }

func newService(t *testing.T, store *Store, keys *secrets.Keyring) *Service {
	t.Helper()
	tokens, err := NewTokens(TokenConfig{Secret: []byte(strings.Repeat("k", 32)), Issuer: "i", Audience: "a"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	svc, err := NewService(Config{PublicURL: "https://gw.example.com/"}, store, keys, tokens, testResolver, nil)
	if err != nil {
		t.Fatal(err)
	}
	return svc
}

func TestServiceRules(t *testing.T) {
	ctx := context.Background()
	db := testenv.Postgres(t)
	keys, _ := newKeyring(t, nil)
	svc := newService(t, NewStore(db), keys)

	if got := svc.WebhookURL("42"); got != "https://gw.example.com/webhook/42" {
		t.Errorf("got webhook URL %s, want https://gw.example.com/webhook/42", got)
	}
	a, _, err := svc.CreateTenant(ctx, TenantInput{Name: "a", CallbackURL: "https://hooks.example.com/"})
	if err != nil {
		t.Fatal(err)
	}
	b, _, err := svc.CreateTenant(ctx, TenantInput{Name: "b", CallbackURL: "https://hooks.example.com/"})
	if err != nil {
		t.Fatal(err)
	}
	if a.ID >= b.ID {
		t.Errorf("tenant ids do not sort by creation: %s then %s", a.ID, b.ID)
	}
	if _, err := svc.RegisterApp(ctx, a.ID, AppInput{AppID: "1", AppSecret: "s", VerifyToken: "a-verify-token-16"}); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name      string
		err       error
		wantErr   error
		wantField string
	}{
		{"verify token taken", second(svc.RegisterApp(ctx, b.ID, AppInput{AppID: "2", AppSecret: "s", VerifyToken: "a-verify-token-16"})), ErrConflict, "verify_token"},
		{"app id taken by another tenant", second(svc.RegisterApp(ctx, b.ID, AppInput{AppID: "1", AppSecret: "s"})), ErrConflict, "app_id"},
		{"app of an unknown tenant", second(svc.RegisterApp(ctx, uuid.NewString(), AppInput{AppID: "3", AppSecret: "s"})), ErrNotFound, ""},
		{"Page on another tenant's app", second(svc.RegisterPage(ctx, b.ID, PageInput{PageID: "10", AppID: "1"})), ErrInvalid, "app_id"},
		{"bad page id", second(svc.RegisterPage(ctx, a.ID, PageInput{PageID: "1x", AppID: "1"})), ErrInvalid, "page_id"},
		{"bad object", second(svc.RegisterPage(ctx, a.ID, PageInput{PageID: "10", AppID: "1", Object: "x"})), ErrInvalid, "object"},
		{"unknown event type", third(svc.UpdateTenant(ctx, a.ID, TenantPatch{Events: &[]string{"nope"}})), ErrInvalid, "events"},
		{"name too long", third(svc.UpdateTenant(ctx, a.ID, TenantPatch{Name: ptr(strings.Repeat("n", 201))})), ErrInvalid, "name"},
		{"unknown tenant", third(svc.UpdateTenant(ctx, uuid.NewString(), TenantPatch{})), ErrNotFound, ""},
		{"token ttl too long", third(svc.IssueToken(ctx, a.ID, 10*365*24*time.Hour)), ErrInvalid, "ttl"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if !errors.Is(tt.err, tt.wantErr) {
				t.Fatalf("got %v, want %v", tt.err, tt.wantErr)
			}
			var fe *FieldError
			if got := ""; errors.As(tt.err, &fe) {
				got = fe.Field
				if got != tt.wantField {
					t.Errorf("got field %q, want %q", got, tt.wantField)
				}
			} else if tt.wantField != "" {
				t.Errorf("got %v, want a *FieldError on %s", tt.err, tt.wantField)
			}
		})
	}

	// A minted tenant token verifies as that tenant.
	tok, _, err := svc.IssueToken(ctx, a.ID, 0)
	if err != nil {
		t.Fatal(err)
	}
	p, err := svc.tokens.Verify(tok)
	if err != nil || p.Role != RoleTenant || p.TenantID != a.ID {
		t.Errorf("minted token: got %+v, %v; want tenant %s", p, err, a.ID)
	}
}

func second[T any](_ T, err error) error { return err }

func third[T, U any](_ T, _ U, err error) error { return err }

func TestCursor(t *testing.T) {
	c := database.EncodeCursor([]string{"0190a8a0-0000-7000-8000-000000000000"})
	id, err := idCursor(c)
	if err != nil || id.String() != "0190a8a0-0000-7000-8000-000000000000" {
		t.Errorf("round trip: got %s %v", id, err)
	}
	for _, bad := range []string{"%%%", "bm90IGpzb24", database.EncodeCursor([]string{"a", "b"}), database.EncodeCursor([]string{"not a uuid"}),
		database.EncodeCursor([]string{"x\x00y"})} {
		if _, err := idCursor(bad); !errors.Is(err, ErrInvalid) {
			t.Errorf("cursor %q: got %v, want ErrInvalid", bad, err)
		}
	}
}

// TestServiceTextInputs: every text input the Service passes to Postgres
// is refused as a *FieldError (or, for an id in a path, ErrNotFound) when
// it holds a NUL byte or invalid UTF-8, whoever the caller is; Postgres
// would fail the statement instead.
func TestServiceTextInputs(t *testing.T) {
	ctx := context.Background()
	db := testenv.Postgres(t)
	keys, _ := newKeyring(t, nil)
	svc := newService(t, NewStore(db), keys)
	a, _, err := svc.CreateTenant(ctx, TenantInput{Name: "a", CallbackURL: "https://hooks.example.com/"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := svc.RegisterApp(ctx, a.ID, AppInput{AppID: "1", AppSecret: "s"}); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.RegisterPage(ctx, a.ID, PageInput{PageID: "10", AppID: "1"}); err != nil {
		t.Fatal(err)
	}
	type textCase struct {
		name      string
		err       error
		wantErr   error
		wantField string
	}
	for _, bad := range []string{"x\x00y", "x\xffy"} {
		tests := []textCase{
			{"create name", third(svc.CreateTenant(ctx, TenantInput{Name: bad, CallbackURL: "https://hooks.example.com/"})), ErrInvalid, "name"},
			{"create callback_url", third(svc.CreateTenant(ctx, TenantInput{Name: "n", CallbackURL: "https://hooks.example.com/" + bad})), ErrInvalid, "callback_url"},
			{"create events", third(svc.CreateTenant(ctx, TenantInput{Name: "n", CallbackURL: "https://hooks.example.com/", Events: []string{bad}})), ErrInvalid, "events"},
			{"patch name", third(svc.UpdateTenant(ctx, a.ID, TenantPatch{Name: &bad})), ErrInvalid, "name"},
			{"patch callback_url", third(svc.UpdateTenant(ctx, a.ID, TenantPatch{CallbackURL: ptr("https://hooks.example.com/" + bad)})), ErrInvalid, "callback_url"},
			{"app id", second(svc.RegisterApp(ctx, a.ID, AppInput{AppID: bad, AppSecret: "s"})), ErrInvalid, "app_id"},
			{"app secret", second(svc.RegisterApp(ctx, a.ID, AppInput{AppID: "2", AppSecret: bad})), ErrInvalid, "app_secret"},
			{"verify token", second(svc.RegisterApp(ctx, a.ID, AppInput{AppID: "2", AppSecret: "s", VerifyToken: bad + "0123456789abcdef"})), ErrInvalid, "verify_token"},
			{"rotated app secret", second(svc.UpdateApp(ctx, a.ID, "1", AppPatch{AppSecret: &bad})), ErrInvalid, "app_secret"},
			{"get app", second(svc.GetApp(ctx, a.ID, bad)), ErrNotFound, ""},
			{"update app", second(svc.UpdateApp(ctx, a.ID, bad, AppPatch{})), ErrNotFound, ""},
			{"delete app", svc.DeleteApp(ctx, a.ID, bad), ErrNotFound, ""},
			{"page id", second(svc.RegisterPage(ctx, a.ID, PageInput{PageID: bad, AppID: "1"})), ErrInvalid, "page_id"},
			{"page app id", second(svc.RegisterPage(ctx, a.ID, PageInput{PageID: "11", AppID: bad})), ErrInvalid, "app_id"},
			{"page object", second(svc.RegisterPage(ctx, a.ID, PageInput{PageID: "11", AppID: "1", Object: Object(bad)})), ErrInvalid, "object"},
			{"delete page id", svc.DeletePage(ctx, a.ID, bad, ""), ErrNotFound, ""},
			{"delete page app id", svc.DeletePage(ctx, a.ID, "10", bad), ErrInvalid, "app_id"},
		}
		if strings.Contains(bad, "\x00") { // JSON turns a stray byte into U+FFFD: harmless in a cursor
			tests = append(tests, []textCase{
				{"apps cursor", second(svc.ListApps(ctx, a.ID, database.ListOptions{Cursor: database.EncodeCursor([]string{bad})})), ErrInvalid, "cursor"},
				{"pages cursor", second(svc.ListPages(ctx, a.ID, database.ListOptions{Cursor: database.EncodeCursor([]string{bad, "1"})})), ErrInvalid, "cursor"},
			}...)
		}
		for _, tt := range tests {
			t.Run(fmt.Sprintf("%q/%s", bad, tt.name), func(t *testing.T) {
				if !errors.Is(tt.err, tt.wantErr) {
					t.Fatalf("got %v, want %v", tt.err, tt.wantErr)
				}
				var fe *FieldError
				if errors.As(tt.err, &fe) != (tt.wantField != "") || (fe != nil && fe.Field != tt.wantField) {
					t.Errorf("got %v, want a *FieldError on %q", tt.err, tt.wantField)
				}
				if tt.err != nil && strings.Contains(tt.err.Error(), bad) {
					t.Errorf("the error repeats the value: %q", tt.err)
				}
			})
		}
	}
	got, err := svc.GetTenant(ctx, a.ID)
	if err != nil || got.Name != "a" || got.CallbackURL != "https://hooks.example.com/" {
		t.Errorf("tenant after refused changes: got %+v, %v", got, err)
	}
}
