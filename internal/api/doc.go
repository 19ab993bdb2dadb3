// Package api is the gateway's HTTP surface, and the only package that
// imports Fiber: the webhook ingress routes (/webhook, /webhook/{app_id}),
// the admin API under /admin/v1 (huma, OpenAPI 3.1, RFC 9457 errors), and
// /healthz and /readyz. Every route is listed in routes.go.
//
// Handlers decode, make one service call and encode; rules live in the
// tenant and webhook packages. fasthttp reuses a request's memory once its
// handler returns, so nothing here keeps c.Body() or any other Ctx value
// past the handler, and no Ctx is handed to a goroutine. Strings from Fiber
// (and from huma's Fiber adapter, which does not copy them) point into that
// memory: metric labels are constants or copies, and the strings handed to
// the domain, which may keep them, are copies.
package api
