// Command loadgen measures the webhook ingress end to end: it starts the
// real gateway binary (`gateway serve --role ingress`) against a fresh
// Postgres database and the local Redis, seeds one tenant, one app and 20
// Pages, and sends unique, correctly signed Messenger postbacks to
// POST /webhook/{app_id}, closed loop or at a fixed rate, with 1 or more
// events per POST. For every scenario it prints accepted events/s, the ack
// latency distribution, the CPU each process spent per accepted event, and
// checks that every acknowledged event is stored.
//
// It speaks HTTP/1.1 over plain keep-alive connections itself (stdlib only:
// the import boundary keeps fasthttp inside internal/api) so that the loader,
// which shares the machine's cores with the system under test, stays cheap.
//
// With -pipeline it also delivers to a receiver in this process and
// measures delivery; with -ordering it adds a tenant whose endpoint is
// ordered (ordering conversation) and compares it with the unordered one
// in the same run, with and without a conversation that always fails.
//
//	go build -o bin/gateway ./cmd/gateway
//	go run ./cmd/loadgen -gateway ./bin/gateway
//	go run ./cmd/loadgen -gateway ./bin/gateway -ordering
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(1)
	}
}
