package api

// routes lists every route of the gateway.
//
//	GET  /healthz                    liveness
//	GET  /readyz                     readiness (Postgres, Redis, not draining)
//	GET  /webhook, /webhook/:app_id  Meta's subscription verification
//	POST /webhook, /webhook/:app_id  Meta's notifications
//	     /admin/v1/...               the admin API (admin.go; OpenAPI at /admin/v1/openapi.json,
//	                                 reference page at /admin/v1/docs: docs.go)
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
	if s.deps.Admin != nil {
		s.registerAdmin(s.deps.Admin)
	}
}
