package tenant

import (
	"context"
	"fmt"

	"gorm.io/gorm"
	"gorm.io/gorm/clause"

	"github.com/postgate/postgate/internal/secrets"
)

// RekeyCount is what Rekey did to one secret column.
type RekeyCount struct {
	Column  string // such as "apps.secret"
	Rekeyed int    // re-sealed under the current key
	Current int    // already under the current key, left alone
}

// Rekey re-seals every secret at rest (apps.secret, apps.previous_secret,
// endpoints.signing_secret, endpoints.previous_signing_secret,
// pages.access_token) under keys'
// current key, in one transaction with the rows locked: either every
// secret opens and is re-sealed, or nothing changes. Once it has run,
// SECRET_KEY_PREVIOUS can be dropped. Errors name the row, never a secret.
func (s *Store) Rekey(ctx context.Context, keys *secrets.Keyring) ([]RekeyCount, error) {
	counts := []RekeyCount{
		{Column: "endpoints.signing_secret"}, {Column: "endpoints.previous_signing_secret"},
		{Column: "apps.secret"}, {Column: "apps.previous_secret"},
		{Column: "pages.access_token"},
	}
	reseal := func(c *RekeyCount, ct []byte, binding string) ([]byte, bool, error) {
		if len(ct) == 0 {
			return ct, false, nil
		}
		if keys.IsCurrent(ct) {
			c.Current++
			return ct, false, nil
		}
		pt, err := keys.Open(ct, binding)
		if err != nil {
			return nil, false, fmt.Errorf("%s of %s: %w", c.Column, binding, err)
		}
		c.Rekeyed++
		return keys.Seal(pt, binding), true, nil
	}
	err := s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
		var endpoints []endpointRow
		if err := tx.Select("id", "signing_secret", "previous_signing_secret").
			Clauses(clause.Locking{Strength: "UPDATE"}).Order("id").Find(&endpoints).Error; err != nil {
			return storeErr("read endpoints", err)
		}
		for _, r := range endpoints {
			id := r.ID.String()
			cur, ch1, err := reseal(&counts[0], r.SigningSecret, SigningSecretBinding(id))
			if err != nil {
				return err
			}
			prev, ch2, err := reseal(&counts[1], r.PreviousSigningSecret, PreviousSigningSecretBinding(id))
			if err != nil {
				return err
			}
			if !ch1 && !ch2 {
				continue
			}
			if err := tx.Model(&endpointRow{}).Where("id = ?", r.ID).
				Updates(map[string]any{"signing_secret": cur, "previous_signing_secret": prev}).Error; err != nil {
				return storeErr("update endpoint "+id, err)
			}
		}
		var apps []appRow
		if err := tx.Select("app_id", "secret", "previous_secret").
			Clauses(clause.Locking{Strength: "UPDATE"}).Order("app_id").Find(&apps).Error; err != nil {
			return storeErr("read apps", err)
		}
		for _, r := range apps {
			cur, ch1, err := reseal(&counts[2], r.Secret, AppSecretBinding(r.AppID))
			if err != nil {
				return err
			}
			prev, ch2, err := reseal(&counts[3], r.PreviousSecret, AppPreviousSecretBinding(r.AppID))
			if err != nil {
				return err
			}
			if !ch1 && !ch2 {
				continue
			}
			if err := tx.Model(&appRow{}).Where("app_id = ?", r.AppID).
				Updates(map[string]any{"secret": cur, "previous_secret": prev}).Error; err != nil {
				return storeErr("update app "+r.AppID, err)
			}
		}
		var pages []pageRow
		if err := tx.Select("page_id", "app_id", "access_token").Where("access_token IS NOT NULL").
			Clauses(clause.Locking{Strength: "UPDATE"}).Order("page_id").Order("app_id").Find(&pages).Error; err != nil {
			return storeErr("read pages", err)
		}
		for _, r := range pages {
			tok, ch, err := reseal(&counts[4], r.AccessToken, PageTokenBinding(r.PageID, r.AppID))
			if err != nil {
				return err
			}
			if !ch {
				continue
			}
			if err := tx.Model(&pageRow{}).Where("page_id = ? AND app_id = ?", r.PageID, r.AppID).
				Update("access_token", tok).Error; err != nil {
				return storeErr("update page "+r.PageID, err)
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("rekey: %w", err)
	}
	return counts, nil
}
