package api

import (
	"encoding/json"
	"sync"

	"github.com/danielgtaylor/huma/v2"
	"github.com/gofiber/fiber/v2"
)

// registerOpenAPI serves the admin API's OpenAPI document under
// /admin/v1, without auth: openapi.json (3.1) and, as huma offered them,
// openapi.yaml, openapi-3.0.json and openapi-3.0.yaml. Each is built once,
// on first request, after every operation is registered. (huma's own
// routes build it lazily without a lock: concurrent first requests race.)
func (s *Server) registerOpenAPI(api huma.API) {
	serve := func(path, contentType string, build func() ([]byte, error)) {
		doc := sync.OnceValues(build)
		s.app.Get(AdminPrefix+path, func(c *fiber.Ctx) error {
			b, err := doc()
			if err != nil {
				return err
			}
			c.Set(fiber.HeaderContentType, contentType)
			return c.Send(b)
		})
	}
	serve("/openapi.json", "application/openapi+json", func() ([]byte, error) { return json.Marshal(api.OpenAPI()) })
	serve("/openapi.yaml", "application/openapi+yaml", func() ([]byte, error) { return api.OpenAPI().YAML() })
	serve("/openapi-3.0.json", "application/openapi+json", func() ([]byte, error) { return api.OpenAPI().Downgrade() })
	serve("/openapi-3.0.yaml", "application/openapi+yaml", func() ([]byte, error) { return api.OpenAPI().DowngradeYAML() })
}
