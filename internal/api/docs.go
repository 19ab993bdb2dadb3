package api

import (
	"crypto/sha256"
	"embed"
	"encoding/base64"
	"encoding/json"
	"io/fs"
	"path"
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

// docsUI is the API reference page and everything it loads: no asset comes
// from another host, so the page works offline. redoc.standalone.js is the
// npm package redoc's bundle at the version scripts/vendor-redoc.sh pins
// (make vendor-redoc reproduces it); the rest is ours.
//
//go:embed docsui
var docsUI embed.FS

// DocsPath is where the API reference page is served (no auth, like the
// OpenAPI document it renders).
const DocsPath = AdminPrefix + "/docs"

// docsCSP allows the page only its own origin: scripts and styles from
// files served here, the OpenAPI document fetched from here. Redoc needs
// inline styles (styled-components), a blob: worker for its search, and
// data: images and fonts; nothing may frame the page or be framed by it.
const docsCSP = "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; " +
	"img-src 'self' data:; font-src 'self' data:; connect-src 'self'; worker-src blob:; " +
	"base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

var docsTypes = map[string]string{
	".html": fiber.MIMETextHTMLCharsetUTF8,
	".js":   fiber.MIMETextJavaScriptCharsetUTF8,
	".css":  "text/css; charset=utf-8",
	".txt":  fiber.MIMETextPlainCharsetUTF8,
}

// registerDocs serves the API reference: the page at /admin/v1/docs and
// each embedded file at /admin/v1/docs/{name}, one route per file (route
// templates stay bounded metric labels). Files are revalidated by ETag.
func (s *Server) registerDocs() {
	entries, err := fs.ReadDir(docsUI, "docsui")
	if err != nil {
		panic(err) // embedded at build time: cannot fail
	}
	for _, e := range entries {
		name := e.Name()
		b, err := docsUI.ReadFile("docsui/" + name)
		if err != nil {
			panic(err)
		}
		route := DocsPath + "/" + name
		if name == "index.html" {
			route = DocsPath
		}
		s.app.Get(route, staticFile(b, docsTypes[path.Ext(name)], name == "index.html"))
	}
}

func staticFile(body []byte, contentType string, page bool) fiber.Handler {
	sum := sha256.Sum256(body)
	etag := `"` + base64.RawURLEncoding.EncodeToString(sum[:12]) + `"`
	return func(c *fiber.Ctx) error {
		c.Set(fiber.HeaderXContentTypeOptions, "nosniff")
		c.Set(fiber.HeaderCacheControl, "no-cache")
		c.Set(fiber.HeaderETag, etag)
		if page {
			c.Set(fiber.HeaderContentSecurityPolicy, docsCSP)
			c.Set(fiber.HeaderReferrerPolicy, "no-referrer")
		}
		if c.Get(fiber.HeaderIfNoneMatch) == etag {
			return c.SendStatus(fiber.StatusNotModified)
		}
		c.Set(fiber.HeaderContentType, contentType)
		return c.Send(body)
	}
}
