package api

import "github.com/postgate/postgate/internal/api/console"

// routes lists every route of the gateway.
//
//	GET  /healthz                    liveness
//	GET  /readyz                     readiness (Postgres, Redis, not draining)
//	GET  /webhook, /webhook/:app_id  Meta's subscription verification
//	POST /webhook, /webhook/:app_id  Meta's notifications
//	     /admin/v1/...               the admin API (admin.go; OpenAPI at /admin/v1/openapi.json,
//	                                 reference page at /admin/v1/docs: docs.go)
//	     /console/...                the web console (package console)
func (s *Server) routes() {
	s.app.Use(s.metrics.middleware)
	s.app.Get("/healthz", s.healthz)
	s.app.Get("/readyz", s.readyz)
	if s.deps.Ingest != nil {
		s.app.Get("/webhook", s.webhookVerify)
		s.app.Get("/webhook/:app_id", s.webhookVerify)
		s.app.Post("/webhook", s.webhookNotify)
		s.app.Post("/webhook/:app_id", s.webhookNotify)
	}
	if s.deps.Console != nil {
		d := *s.deps.Console
		if d.Log == nil {
			d.Log = s.log
		}
		console.Register(s.app, d)
	}
	if s.deps.Admin != nil {
		s.registerAdmin(s.deps.Admin)
	}
}
