package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"
)

// clockTicks is USER_HZ, the unit of /proc/<pid>/stat times (100 on every
// Linux architecture Go runs on in practice).
const clockTicks = 100

// cpuSample is CPU time used so far, in clock ticks, per process group.
type cpuSample struct {
	gateway, postgres, redis, loader int64
	// machine-wide, from /proc/stat (all CPUs)
	busy, steal, total int64
}

// procTimes reads utime+stime (and, with children, cutime+cstime) of pid.
func procTimes(pid string, children bool) (comm string, ticks int64, ok bool) {
	b, err := os.ReadFile("/proc/" + pid + "/stat")
	if err != nil {
		return "", 0, false
	}
	// The command name is in parentheses and may contain spaces.
	open, end := bytes.IndexByte(b, '('), bytes.LastIndexByte(b, ')')
	if open < 0 || end < open {
		return "", 0, false
	}
	comm = string(b[open+1 : end])
	f := strings.Fields(string(b[end+1:]))
	// f[0] is field 3 (state); utime is field 14, stime 15, cutime 16, cstime 17.
	if len(f) < 15 {
		return comm, 0, false
	}
	n := 2
	if children {
		n = 4
	}
	for _, s := range f[11 : 11+n] {
		v, _ := strconv.ParseInt(s, 10, 64)
		ticks += v
	}
	return comm, ticks, true
}

// sampleCPU reads the CPU used by the gateway, every postgres process
// (with the reaped children of each, so a backend that exits inside the
// window is still counted), redis-server, and this process.
func sampleCPU(gatewayPID int) cpuSample {
	var s cpuSample
	_, s.gateway, _ = procTimes(strconv.Itoa(gatewayPID), false)
	_, s.loader, _ = procTimes("self", false)
	if ents, err := os.ReadDir("/proc"); err == nil {
		for _, e := range ents {
			name := e.Name()
			if name[0] < '0' || name[0] > '9' {
				continue
			}
			comm, err := os.ReadFile("/proc/" + name + "/comm")
			if err != nil {
				continue
			}
			switch c := strings.TrimSpace(string(comm)); {
			case strings.HasPrefix(c, "postgres"):
				_, t, _ := procTimes(name, true)
				s.postgres += t
			case strings.HasPrefix(c, "redis-server"):
				_, t, _ := procTimes(name, false)
				s.redis += t
			}
		}
	}
	if b, err := os.ReadFile("/proc/stat"); err == nil {
		line, _, _ := strings.Cut(string(b), "\n")
		f := strings.Fields(line) // cpu user nice system idle iowait irq softirq steal ...
		for i, v := range f[1:] {
			n, _ := strconv.ParseInt(v, 10, 64)
			s.total += n
			switch i {
			case 3, 4: // idle, iowait
			case 7:
				s.steal += n
			default:
				if i < 8 { // guest time is already in user
					s.busy += n
				}
			}
		}
	}
	return s
}

// cpuPerEvent is microseconds of CPU per accepted event.
type cpuPerEvent struct {
	Gateway  float64 `json:"gateway"`
	Postgres float64 `json:"postgres"`
	Redis    float64 `json:"redis"`
	Loader   float64 `json:"loader"`
	// Server is gateway + Postgres + Redis; Total adds the loader.
	Server float64 `json:"server"`
	Total  float64 `json:"total"`
}

// cpuCores is the average number of cores each used during the window.
type cpuCores struct {
	Gateway  float64 `json:"gateway"`
	Postgres float64 `json:"postgres"`
	Redis    float64 `json:"redis"`
	Loader   float64 `json:"loader"`
	// Machine is every CPU's busy time (all processes, from /proc/stat),
	// Steal the time the hypervisor gave to others.
	Machine float64 `json:"machine"`
	Steal   float64 `json:"steal"`
	// Other is Machine minus the four measured processes: everything else
	// that ran on the cores (other users' builds and tests, the kernel).
	Other float64 `json:"other"`
}

func cpuDelta(a, b cpuSample, events int64, secs float64) (cpuPerEvent, cpuCores) {
	tick := 1e6 / float64(clockTicks) // µs
	per := func(d int64) float64 {
		if events == 0 {
			return 0
		}
		return float64(d) * tick / float64(events)
	}
	cores := func(d int64) float64 { return float64(d) / clockTicks / secs }
	e := cpuPerEvent{
		Gateway: per(b.gateway - a.gateway), Postgres: per(b.postgres - a.postgres),
		Redis: per(b.redis - a.redis), Loader: per(b.loader - a.loader),
	}
	e.Server = e.Gateway + e.Postgres + e.Redis
	e.Total = e.Server + e.Loader
	c := cpuCores{
		Gateway: cores(b.gateway - a.gateway), Postgres: cores(b.postgres - a.postgres),
		Redis: cores(b.redis - a.redis), Loader: cores(b.loader - a.loader),
	}
	if dt := b.total - a.total; dt > 0 {
		ncpu := float64(runtime.NumCPU())
		c.Machine = float64(b.busy-a.busy) / float64(dt) * ncpu
		c.Steal = float64(b.steal-a.steal) / float64(dt) * ncpu
		c.Other = max(0, c.Machine-c.Gateway-c.Postgres-c.Redis-c.Loader)
	}
	return e, c
}

// latencyMS summarises ack latencies in milliseconds.
type latencyMS struct {
	N    int     `json:"n"`
	Mean float64 `json:"mean"`
	P50  float64 `json:"p50"`
	P90  float64 `json:"p90"`
	P99  float64 `json:"p99"`
	P999 float64 `json:"p99_9"`
	Max  float64 `json:"max"`
}

func summarise(lat []time.Duration) latencyMS {
	if len(lat) == 0 {
		return latencyMS{}
	}
	slices.Sort(lat)
	q := func(p float64) float64 {
		i := int(math.Ceil(p*float64(len(lat)))) - 1
		return ms(lat[max(0, min(i, len(lat)-1))])
	}
	var sum time.Duration
	for _, d := range lat {
		sum += d
	}
	return latencyMS{
		N: len(lat), Mean: ms(sum / time.Duration(len(lat))),
		P50: q(0.50), P90: q(0.90), P99: q(0.99), P999: q(0.999), Max: ms(lat[len(lat)-1]),
	}
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// promSnapshot holds the gateway's Prometheus samples: "name{labels}" →
// value (histogram buckets, sums and counts are plain samples too).
type promSnapshot map[string]float64

func scrape(addr string) (promSnapshot, error) {
	hc := &http.Client{Timeout: 5 * time.Second}
	resp, err := hc.Get("http://" + addr + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		_, _ = io.Copy(io.Discard, resp.Body)
		return nil, fmt.Errorf("GET /metrics: %s", resp.Status)
	}
	snap := promSnapshot{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "postgate_") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			continue
		}
		snap[line[:i]] = v
	}
	return snap, sc.Err()
}

// histDelta is a histogram's growth between two snapshots.
type histDelta struct {
	count, sum float64
	buckets    []bucket // cumulative, by upper bound
}

type bucket struct{ le, n float64 }

func (a promSnapshot) hist(b promSnapshot, name string) histDelta {
	h := histDelta{count: b[name+"_count"] - a[name+"_count"], sum: b[name+"_sum"] - a[name+"_sum"]}
	prefix := name + `_bucket{le="`
	for k, v := range b {
		if !strings.HasPrefix(k, prefix) {
			continue
		}
		le, err := strconv.ParseFloat(strings.TrimSuffix(k[len(prefix):], `"}`), 64)
		if err != nil {
			continue
		}
		h.buckets = append(h.buckets, bucket{le: le, n: v - a[k]})
	}
	slices.SortFunc(h.buckets, func(x, y bucket) int {
		switch {
		case x.le < y.le:
			return -1
		case x.le > y.le:
			return 1
		}
		return 0
	})
	return h
}

func (h histDelta) mean() float64 {
	if h.count == 0 {
		return 0
	}
	return h.sum / h.count
}

// quantile is the upper bound of the bucket holding quantile q (so an
// upper estimate, at the histogram's resolution).
func (h histDelta) quantile(q float64) float64 {
	if h.count == 0 {
		return 0
	}
	rank := q * h.count
	for _, b := range h.buckets {
		if b.n >= rank {
			return b.le
		}
	}
	return math.Inf(1)
}

// gatewayStages is what the gateway's own metrics say about the window.
type gatewayStages struct {
	CommitsPerSec       float64 `json:"commits_per_s"`
	CommitMeanMS        float64 `json:"commit_mean_ms"`
	CommitP99MS         float64 `json:"commit_p99_ms_bucket"`
	BatchEventsMean     float64 `json:"commit_batch_events_mean"`
	BatchRequestsMean   float64 `json:"commit_batch_requests_mean"`
	AckMeanMS           float64 `json:"ack_mean_ms"`
	AckP99MS            float64 `json:"ack_p99_ms_bucket"`
	EventsAccepted      float64 `json:"events_accepted"`
	EventsDuplicate     float64 `json:"events_duplicate"`
	RedisErrors         float64 `json:"redis_errors"`
	CommitSecondsPerSec float64 `json:"commit_busy"` // commit time per second of window: ~ commits in flight
}

func stages(a, b promSnapshot, secs float64) gatewayStages {
	commit := a.hist(b, "postgate_webhook_commit_seconds")
	events := a.hist(b, "postgate_webhook_commit_batch_events")
	reqs := a.hist(b, "postgate_webhook_commit_batch_requests")
	ack := a.hist(b, "postgate_webhook_ack_seconds")
	d := func(k string) float64 { return b[k] - a[k] }
	return gatewayStages{
		CommitsPerSec:       commit.count / secs,
		CommitMeanMS:        commit.mean() * 1000,
		CommitP99MS:         commit.quantile(0.99) * 1000,
		BatchEventsMean:     events.mean(),
		BatchRequestsMean:   reqs.mean(),
		AckMeanMS:           ack.mean() * 1000,
		AckP99MS:            ack.quantile(0.99) * 1000,
		EventsAccepted:      d(`postgate_webhook_events_total{outcome="accepted"}`),
		EventsDuplicate:     d(`postgate_webhook_events_total{outcome="duplicate"}`),
		RedisErrors:         d("postgate_webhook_redis_errors_total"),
		CommitSecondsPerSec: commit.sum / secs,
	}
}

// machineInfo describes where the numbers come from.
type machine struct {
	NumCPU    int    `json:"nproc"`
	CPUModel  string `json:"cpu_model"`
	GoVersion string `json:"go_version"`
	Kernel    string `json:"kernel"`
	MemTotal  string `json:"mem_total"`
	Postgres  string `json:"postgres,omitempty"`
	Redis     string `json:"redis,omitempty"`
}

func machineInfo() machine {
	m := machine{NumCPU: runtime.NumCPU(), GoVersion: runtime.Version()}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.Lines(string(b)) {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPUModel = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		line, _, _ := strings.Cut(string(b), "\n")
		f := strings.Fields(strings.TrimPrefix(line, "MemTotal:"))
		if len(f) == 2 && f[1] == "kB" {
			if kb, err := strconv.ParseFloat(f[0], 64); err == nil {
				m.MemTotal = fmt.Sprintf("%.1f GiB", kb/(1<<20))
			}
		}
	}
	return m
}
