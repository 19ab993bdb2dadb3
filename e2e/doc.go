// Package e2e proves SPEC's guarantees against the real binary: it builds
// bin/gateway, runs it as child processes on free ports against a private
// Postgres cluster and private redis-servers that it starts itself (never
// the machine's shared ones), onboards tenants through the admin API,
// sends signed Meta bodies, and checks what real HTTP receivers got.
//
// The tests sit behind build tags so that `go test ./...` skips them:
//
//	make e2e    go test -tags e2e -count=1 -v ./e2e/    (the suite and the fault tests, run by CI)
//	make soak   go test -tags soak -run TestSoak ...     (10 minutes of mixed load; SOAK_DURATION)
//	make console-screenshots                             (TestE2EConsole alone, writing docs/console/*.png)
//
// TestE2EConsole drives the web console in a headless Chromium
// (/usr/bin/chromium, through chromedp) as an operator and then as a
// tenant; without Chromium it fails under CI=true and skips elsewhere.
//
// Faults are real: kill -9 of a gateway process, FLUSHALL and kill -9 of
// Redis, an immediate shutdown of Postgres, a receiver whose listener is
// closed or that never answers. Every fault test logs one summary line
// (acked, delivered, lost, duplicated) and fails on a lost or misrouted
// event.
package e2e
