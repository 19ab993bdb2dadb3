package main

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
)

// report is everything a run prints.
type report struct {
	Command        string   `json:"command"`
	GatewayCommand string   `json:"gateway_command"`
	GatewayVersion string   `json:"gateway_version"`
	Machine        machine  `json:"machine"`
	StartedAt      string   `json:"started_at"`
	Duration       string   `json:"duration"`
	Warmup         string   `json:"warmup"`
	Scenarios      []result `json:"scenarios"`
	Targets        []target `json:"targets"`
	GatewayLogs    int      `json:"gateway_log_lines"`
	Notes          []string `json:"notes,omitempty"`
}

func (r *report) writeJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

func (r *report) writeTable(w io.Writer) {
	m := r.Machine
	if len(r.Scenarios) > 0 && r.Scenarios[0].Pipeline != nil {
		fmt.Fprintf(w, "Postgate pipeline benchmark (--role all: ingest and delivery to a local receiver; gateway, Postgres, Redis, receiver on this machine)\n")
	} else {
		fmt.Fprintf(w, "Postgate webhook ingest benchmark (ingress only; gateway, Postgres and Redis on this machine)\n")
	}
	fmt.Fprintf(w, "machine:  %d CPUs, %s, %s RAM, kernel %s\n", m.NumCPU, m.CPUModel, m.MemTotal, m.Kernel)
	fmt.Fprintf(w, "software: %s (loadgen); %s; Postgres %s; Redis %s\n", m.GoVersion, r.GatewayVersion, m.Postgres, m.Redis)
	fmt.Fprintf(w, "command:  %s\n", r.Command)
	fmt.Fprintf(w, "gateway:  %s\n", r.GatewayCommand)
	fmt.Fprintf(w, "window:   %s measured after %s warm-up per scenario; started %s\n\n", r.Duration, r.Warmup, r.StartedAt)

	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "scenario\tev/POST\tload\tPOST/s\tevents/s\tack p50 ms\tp99 ms\tp99.9 ms\tmax ms\tnon-200\tCPU µs/event: gw\tpg\tredis\tloader\ttotal\t")
	for _, s := range r.Scenarios {
		load := fmt.Sprintf("c=%d", s.Workers)
		if s.Kind == "rate" {
			load = fmt.Sprintf("%.0f/s", s.Rate)
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%.2f\t%.2f\t%.2f\t%.1f\t%s\t%.1f\t%.1f\t%.1f\t%.1f\t%.1f\t\n",
			s.Name, s.Batch, load, thousands(s.PostsPerSec), thousands(s.EventsPerSec),
			s.Ack.P50, s.Ack.P99, s.Ack.P999, s.Ack.Max, non200(s.Status),
			s.CPUPerEvent.Gateway, s.CPUPerEvent.Postgres, s.CPUPerEvent.Redis, s.CPUPerEvent.Loader, s.CPUPerEvent.Total)
	}
	tw.Flush()

	if len(r.Scenarios) > 0 && r.Scenarios[0].Pipeline != nil {
		fmt.Fprintln(w, "\nDelivery to tenant B's endpoint (O's for :ordered) in the window (e2e = the event's received_at to its arrival at the endpoint):")
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "scenario\taccepted/s\tdelivered/s\te2e p50 ms\tp99 ms\tp99.9 ms\tmax ms\tbacklog at end\tattempts at hanging A\t")
		for _, s := range r.Scenarios {
			p := s.Pipeline
			fmt.Fprintf(tw, "%s\t%s\t%s\t%.2f\t%.2f\t%.2f\t%.1f\t%d\t%d\t\n", s.Name, thousands(s.EventsPerSec), thousands(p.DeliveredPerSec),
				p.E2E.P50, p.E2E.P99, p.E2E.P999, p.E2E.Max, p.BacklogAtEnd, p.HangAttempts)
		}
		tw.Flush()
		if ordered := slices.ContainsFunc(r.Scenarios, func(s result) bool { return s.ordered() }); ordered {
			fmt.Fprintln(w, "\nTenant O's ordered endpoint (:ordered scenarios): attempts at the failing person's events over the scenario (answered 500),")
			fmt.Fprintln(w, "deliveries waiting behind an open one of their conversation when the window closed, and requests that arrived while")
			fmt.Fprintln(w, "another of their conversation was in flight at the endpoint, over the run so far (must be 0):")
			tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
			fmt.Fprintln(tw, "scenario\tfailing attempts\theld at end\torder overlaps\t")
			for _, s := range r.Scenarios {
				if s.ordered() {
					p := s.Pipeline
					fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t\n", s.Name, p.FailingAttempts, p.HeldAtEnd, p.Overlaps)
				}
			}
			tw.Flush()
		}
	}

	fmt.Fprintf(w, "\nCPU used during the window (in cores, of %d), and the stored-events check over the whole scenario:\n", m.NumCPU)
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "scenario\tgateway\tpostgres\tredis\tloader\tother procs\tmachine busy\tsteal\tserver µs/event\tconns\tWAL B/event\tckpt/autovac/analyze\tother-db commits\tstorage\t")
	for _, s := range r.Scenarios {
		c, pg := s.CPUCores, s.Postgres
		fmt.Fprintf(tw, "%s\t%.2f\t%.2f\t%.2f\t%.2f\t%.2f\t%.2f\t%.2f\t%.1f\t%d\t%.0f\t%d/%d/%d\t%d\t%s\t\n",
			s.Name, c.Gateway, c.Postgres, c.Redis, c.Loader, c.Other, c.Machine, c.Steal, s.CPUPerEvent.Server, s.Connections,
			pg.WALBytesEvent, pg.Checkpoints, pg.Autovacuums, pg.Autoanalyzes, pg.OtherCommits, s.Stored)
	}
	tw.Flush()

	fmt.Fprintln(w, "\nThe gateway's own metrics over the window (p99 = upper bound of the histogram bucket):")
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "scenario\tcommits/s\tcommit mean ms\tcommit p99 ≤ ms\tevents/commit\tPOSTs/commit\tcommits in flight\tack mean ms\tack p99 ≤ ms\tduplicates\tredis errors\t")
	for _, s := range r.Scenarios {
		g := s.Gateway
		fmt.Fprintf(tw, "%s\t%s\t%.2f\t%s\t%.1f\t%.1f\t%.2f\t%.2f\t%s\t%.0f\t%.0f\t\n",
			s.Name, thousands(g.CommitsPerSec), g.CommitMeanMS, bound(g.CommitP99MS), g.BatchEventsMean, g.BatchRequestsMean,
			g.CommitSecondsPerSec, g.AckMeanMS, bound(g.AckP99MS), g.EventsDuplicate, g.RedisErrors)
	}
	tw.Flush()

	fmt.Fprintln(w, "\nNoise check: \"other procs\" is machine busy minus the four measured processes; checkpoints, WAL and")
	fmt.Fprintln(w, "other-db commits are Postgres-wide (loadgen issues one CHECKPOINT before each scenario, outside the count).")
	fmt.Fprintln(w, "Non-zero other procs (> ~0.1) or other-db commits mean someone else shared the cores or Postgres.")
	for _, s := range r.Scenarios {
		if s.FirstError != "" {
			fmt.Fprintf(w, "%s: first request error: %s\n", s.Name, s.FirstError)
		}
	}
	if len(r.Targets) > 0 {
		fmt.Fprintln(w, "\nTargets (issues 4 and 5: 2-core machine; issue 15: ordered against unordered, same run):")
		for _, t := range r.Targets {
			mark := "MET   "
			if !t.Met {
				mark = "MISSED"
			}
			fmt.Fprintf(w, "  %s %-16s %-52s measured %s\n", mark, t.Scenario, t.Goal, t.Measured)
		}
	}
	if r.GatewayLogs > 0 {
		fmt.Fprintf(w, "\nthe gateway logged %d lines at warn or above (-keep and rerun to inspect)\n", r.GatewayLogs)
	}
	for _, n := range r.Notes {
		fmt.Fprintln(w, "note:", n)
	}
}

func non200(st map[int]int64) string {
	var parts []string
	for _, code := range slices.Sorted(maps.Keys(st)) {
		if code == 200 {
			continue
		}
		name := strconv.Itoa(code)
		if code == 0 {
			name = "err"
		}
		parts = append(parts, fmt.Sprintf("%s:%d", name, st[code]))
	}
	if len(parts) == 0 {
		return "0"
	}
	return strings.Join(parts, " ")
}

func bound(v float64) string {
	if v > 1e9 {
		return "inf"
	}
	return strconv.FormatFloat(v, 'f', -1, 64)
}

// thousands formats v rounded, with commas.
func thousands(v float64) string {
	s := strconv.FormatInt(int64(v+0.5), 10)
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}
