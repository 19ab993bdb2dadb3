package chart

import (
	"encoding/json"
	"flag"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/prometheus/prometheus/model/labels"
	promql "github.com/prometheus/prometheus/promql/parser"
)

var srcDir = flag.String("src", "../../..", "the gateway's module, whose internal/ and cmd/ declare the metrics")

// prometheusMade are series that Prometheus itself writes, not the gateway.
var prometheusMade = []string{
	"up", "scrape_duration_seconds", "scrape_samples_scraped", "scrape_samples_post_metric_relabeling",
	"scrape_series_added", "ALERTS", "ALERTS_FOR_STATE",
}

// fleetGauges are gauges that every process exporting one sets to the same
// fleet-wide value (read from Postgres, or from the tenant registry every
// replica holds), each with the labels that tell those processes apart.
// Summed over pods such a gauge counts once per pod: an expression must
// first take its max (or min, avg) with those labels aggregated away.
var fleetGauges = map[string][]string{
	"postgate_delivery_backlog_events":          {"instance", "pod"},         // workers
	"postgate_delivery_backlog_age_seconds":     {"instance", "pod"},         // workers
	"postgate_delivery_conversations_held_back": {"instance", "pod"},         // workers
	"postgate_delivery_held_back_age_seconds":   {"instance", "pod"},         // workers
	"postgate_endpoints_disabled":               {"instance", "pod", "role"}, // ingress and workers
	// Meta health, kept in Postgres by whichever replica ran the check.
	"postgate_meta_subscription_active": {"instance", "pod", "role"},
	"postgate_meta_pages_silent":        {"instance", "pod", "role"},
	"postgate_meta_pages_unhealthy":     {"instance", "pod", "role"},
}

// pendingMetrics are metrics the chart reads before the gateway's sources
// declare them: the Meta set-up and health checker (SPEC "Meta set-up and
// health") was built alongside the alerts and dashboard that read it. An
// entry stands in for the source only while the source lacks the metric;
// once the source declares it, the test fails until the entry is deleted,
// and says whether kind and labels agree, so a stand-in never outlives the
// code it stood for.
var pendingMetrics = map[string]metric{}

// targetLabels are the labels a Prometheus Operator ServiceMonitor attaches
// to every scraped series (its relabelings add more).
var targetLabels = []string{"job", "instance", "namespace", "service", "pod", "container", "endpoint"}

// grafanaIntervals are Grafana's built-in time variables, with the value the
// test substitutes for them (a range or a number, as Grafana would).
var grafanaIntervals = map[string]string{
	"__rate_interval": "5m", "__interval": "5m", "__range": "5m",
	"__interval_ms": "300000", "__range_ms": "300000", "__range_s": "300",
}

// grafanaVar is one Grafana variable reference: $name, ${name}, ${name:format} or [[name]].
var grafanaVar = regexp.MustCompile(`\$\{(\w+)(?::[^}]*)?\}|\$(\w+)|\[\[(\w+)(?::[^\]]*)?\]\]`)

// labelValues is a Grafana query variable: label_values(selector, label).
var labelValues = regexp.MustCompile(`^\s*label_values\((.+),\s*\w+\s*\)\s*$`)

// metric is one metric the gateway registers, as its Go source declares it.
type metric struct {
	kind   string   // Counter, Gauge, Histogram, Summary or Untyped (from prometheus.<kind>Opts)
	labels []string // variable and constant labels; incomplete when !known
	known  bool     // labels is complete
	source string   // file:line of the Opts literal
}

// promqlExpr is one PromQL expression the chart ships.
type promqlExpr struct {
	where string // what holds it, for messages
	expr  string // as rendered, Grafana variables substituted
}

// TestPromQL parses every PromQL expression the chart ships (PrometheusRule
// alerts and records, the Grafana dashboard's panel targets and query
// variables) with Prometheus' own parser, and checks that every metric they
// read is one the gateway registers (internal/ and cmd/), with a label it
// has, that counters and histograms go through the functions made for them,
// and that fleet-wide gauges are never added up across processes.
func TestPromQL(t *testing.T) {
	metrics := exportedMetrics(t)
	if len(metrics) == 0 {
		t.Fatalf("no postgate_ metrics found under %s/internal and %s/cmd", *srcDir, *srcDir)
	}
	addPending(t, metrics)
	for name := range fleetGauges {
		if m, ok := metrics[name]; !ok || m.kind != "Gauge" {
			t.Errorf("fleetGauges lists %s, which the gateway does not export as a gauge (see %s/internal, %s/cmd)", name, *srcDir, *srcDir)
		}
	}
	for _, tt := range []struct {
		name string
		args []string
	}{
		{"shipped", []string{"--set", "metrics.prometheusRule.enabled=true", "--set", "metrics.grafanaDashboard.enabled=true",
			"--set", "metrics.serviceMonitor.enabled=true"}},
		{"all-on", []string{"-f", valuesFile("all-on-values.yaml")}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := render(t, tt.args...)
			if len(r.serviceMonitors) == 0 {
				t.Fatal("no ServiceMonitor rendered: the target labels and jobs come from it")
			}
			exprs, recorded := ruleExprs(t, r)
			dash := dashboardExprs(t, r)
			if len(exprs) == 0 || len(dash) == 0 {
				t.Fatalf("got %d rule and %d dashboard expressions: are the PrometheusRule and the dashboard rendered?", len(exprs), len(dash))
			}
			c := newExprChecker(r, metrics, recorded)
			for _, e := range append(exprs, dash...) {
				c.check(t, e)
			}
			t.Logf("%d rule and %d dashboard expressions against %d gateway metrics; target labels %v, jobs %v",
				len(exprs), len(dash), len(metrics), c.targetLabels, c.jobs)
		})
	}
}

// addPending adds pendingMetrics the sources do not declare to metrics, and
// fails for each one they do declare: delete it from pendingMetrics, after
// making the chart and the source agree if they do not.
func addPending(t *testing.T, metrics map[string]metric) {
	t.Helper()
	for name, p := range pendingMetrics {
		m, ok := metrics[name]
		if !ok {
			p.known, p.source = true, "pendingMetrics"
			metrics[name] = p
			continue
		}
		switch got, want := slices.Sorted(slices.Values(m.labels)), slices.Sorted(slices.Values(p.labels)); {
		case m.kind != p.kind || m.known && !slices.Equal(got, want):
			t.Errorf("%s: %s is a %s with labels %v, the chart was written for a %s with labels %v: make them agree, then delete it from pendingMetrics",
				m.source, name, m.kind, got, p.kind, want)
		default:
			t.Errorf("%s: %s is declared now, as the chart expects: delete it from pendingMetrics", m.source, name)
		}
	}
}

// ruleExprs returns the expr of every alert and record, and the names the
// records define.
func ruleExprs(t *testing.T, r rendered) (exprs []promqlExpr, recorded []string) {
	t.Helper()
	for _, pr := range r.rules {
		for _, g := range pr.Spec.Groups {
			for i, rule := range g.Rules {
				name := rule.Alert
				if rule.Record != "" {
					name = "record " + rule.Record
					recorded = append(recorded, rule.Record)
				}
				if name == "" {
					name = "rule #" + strconv.Itoa(i)
				}
				exprs = append(exprs, promqlExpr{
					where: "PrometheusRule " + pr.Name + " group " + g.Name + " " + name,
					expr:  rule.Expr.String(),
				})
			}
		}
	}
	return exprs, recorded
}

// dashboardJSON is the part of a Grafana dashboard that holds PromQL.
type dashboardJSON struct {
	Title      string `json:"title"`
	Templating struct {
		List []struct {
			Name  string          `json:"name"`
			Type  string          `json:"type"`
			Query json.RawMessage `json:"query"` // a string, or {"query": ...}
		} `json:"list"`
	} `json:"templating"`
	Panels []panelJSON `json:"panels"`
}

type panelJSON struct {
	Title      string          `json:"title"`
	Datasource json.RawMessage `json:"datasource"`
	Targets    []struct {
		RefID      string          `json:"refId"`
		Expr       string          `json:"expr"`
		Datasource json.RawMessage `json:"datasource"`
	} `json:"targets"`
	Panels []panelJSON `json:"panels"` // a row's
}

// dashboardExprs returns the PromQL of every panel target and query
// variable of every dashboard (a ConfigMap key ending in .json), with
// Grafana's variables substituted.
func dashboardExprs(t *testing.T, r rendered) []promqlExpr {
	t.Helper()
	var exprs []promqlExpr
	for _, cm := range r.configMaps {
		for key, v := range cm.Data {
			if !strings.HasSuffix(key, ".json") {
				continue
			}
			var d dashboardJSON
			if err := json.Unmarshal([]byte(v), &d); err != nil {
				t.Errorf("ConfigMap %s key %s: %v", cm.Name, key, err)
				continue
			}
			where := "dashboard " + cm.Name + "/" + key
			subst := grafanaSubstitutions(d)
			for _, v := range d.Templating.List {
				if v.Type != "query" {
					continue
				}
				q := variableQuery(v.Query)
				if m := labelValues.FindStringSubmatch(q); m != nil {
					exprs = append(exprs, promqlExpr{where: where + " variable $" + v.Name, expr: subst(m[1])})
				} else if q != "" {
					t.Errorf("%s variable $%s: query %q is not label_values(selector, label); teach this test to read it", where, v.Name, q)
				}
			}
			var walk func(ps []panelJSON)
			walk = func(ps []panelJSON) {
				for _, p := range ps {
					for _, tg := range p.Targets {
						if tg.Expr == "" || !isPrometheus(tg.Datasource, p.Datasource) {
							continue
						}
						exprs = append(exprs, promqlExpr{
							where: where + " panel " + strconv.Quote(p.Title) + " target " + tg.RefID,
							expr:  subst(tg.Expr),
						})
					}
					walk(p.Panels)
				}
			}
			walk(d.Panels)
		}
	}
	return exprs
}

// grafanaSubstitutions replaces Grafana's interval variables with 5m and the
// dashboard's own variables with a plain label value; references to
// variables the dashboard does not define are left alone (and fail to parse).
func grafanaSubstitutions(d dashboardJSON) func(string) string {
	vars := map[string]string{}
	for k, v := range grafanaIntervals {
		vars[k] = v
	}
	for _, v := range d.Templating.List {
		if v.Type == "interval" {
			vars[v.Name] = "5m"
		} else {
			vars[v.Name] = "x"
		}
	}
	return func(s string) string {
		return grafanaVar.ReplaceAllStringFunc(s, func(ref string) string {
			m := grafanaVar.FindStringSubmatch(ref)
			if v, ok := vars[m[1]+m[2]+m[3]]; ok {
				return v
			}
			return ref
		})
	}
}

func variableQuery(raw json.RawMessage) string {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	var q struct {
		Query string `json:"query"`
	}
	_ = json.Unmarshal(raw, &q)
	return q.Query
}

// isPrometheus reports whether a target queries Prometheus: its datasource,
// else its panel's, is of type prometheus, or unset, or a variable.
func isPrometheus(datasources ...json.RawMessage) bool {
	for _, raw := range datasources {
		if len(raw) == 0 || string(raw) == "null" {
			continue
		}
		var ds struct {
			Type string `json:"type"`
		}
		if json.Unmarshal(raw, &ds) != nil || ds.Type == "" {
			return true // a name or a variable: assume the dashboard's Prometheus
		}
		return ds.Type == "prometheus"
	}
	return true
}

// rateFuncs take a range of a counter.
var rateFuncs = []string{"rate", "irate", "increase"}

// exprChecker knows what an expression may read: the gateway's metrics,
// the records of the rendered rules, and the labels and job names the
// rendered ServiceMonitors give the scraped series.
type exprChecker struct {
	metrics      map[string]metric
	recorded     []string
	targetLabels []string
	jobs         []string
}

func newExprChecker(r rendered, metrics map[string]metric, recorded []string) *exprChecker {
	c := &exprChecker{metrics: metrics, recorded: recorded, targetLabels: slices.Clone(targetLabels)}
	for _, sm := range r.serviceMonitors {
		for _, ep := range sm.Spec.Endpoints {
			for _, rl := range slices.Concat(ep.RelabelConfigs, ep.MetricRelabelConfigs) {
				if rl.TargetLabel != "" && !strings.HasPrefix(rl.TargetLabel, "__") && !slices.Contains(c.targetLabels, rl.TargetLabel) {
					c.targetLabels = append(c.targetLabels, rl.TargetLabel)
				}
			}
		}
		for _, s := range r.services {
			if !selects(&sm.Spec.Selector, s.Labels) {
				continue
			}
			job := s.Name // the operator's job label, unless spec.jobLabel names a Service label
			if sm.Spec.JobLabel != "" && s.Labels[sm.Spec.JobLabel] != "" {
				job = s.Labels[sm.Spec.JobLabel]
			}
			c.jobs = append(c.jobs, job)
		}
	}
	return c
}

// check parses one expression and checks the metrics it reads.
func (c *exprChecker) check(t *testing.T, e promqlExpr) {
	t.Helper()
	expr, err := promql.NewParser(promql.Options{}).ParseExpr(e.expr)
	if err != nil {
		t.Errorf("%s: %v\n%s", e.where, err, e.expr)
		return
	}
	promql.Inspect(expr, func(node promql.Node, path []promql.Node) error {
		switch n := node.(type) {
		case *promql.VectorSelector:
			c.checkSelector(t, e, n)
			checkFleetGauge(t, e, n, path)
		case *promql.Call:
			switch {
			case slices.Contains(rateFuncs, n.Func.Name):
				for _, name := range selectorNames(n.Args[0]) {
					if m, base := lookup(c.metrics, name); base != "" && m.kind != "Counter" && name == base {
						t.Errorf("%s: %s() of %s, a %s: rate and increase are for counters", e.where, n.Func.Name, name, m.kind)
					}
				}
			case n.Func.Name == "histogram_quantile":
				for _, name := range selectorNames(n.Args[1]) {
					if m, base := lookup(c.metrics, name); base != "" && (m.kind != "Histogram" || name != base+"_bucket") {
						t.Errorf("%s: histogram_quantile() of %s: want the _bucket series of a histogram", e.where, name)
					}
				}
			}
		}
		return nil
	})
}

// checkSelector: the selector names a metric the gateway exports (or a
// record, or a series Prometheus writes), matches only labels it has, and a
// job="..." matcher names a job the rendered ServiceMonitors scrape.
func (c *exprChecker) checkSelector(t *testing.T, e promqlExpr, vs *promql.VectorSelector) {
	t.Helper()
	name := vs.Name
	if name == "" {
		t.Errorf("%s: selector %s names no metric", e.where, vs)
		return
	}
	for _, lm := range vs.LabelMatchers {
		if lm.Name == "job" && lm.Type == labels.MatchEqual && !slices.Contains(c.jobs, lm.Value) {
			t.Errorf("%s: %s: no rendered ServiceMonitor scrapes job %q (jobs: %v)", e.where, vs, lm.Value, c.jobs)
		}
	}
	if slices.Contains(c.recorded, name) || slices.Contains(prometheusMade, name) {
		return
	}
	m, base := lookup(c.metrics, name)
	if base == "" {
		t.Errorf("%s: metric %s is not one the gateway exports (see %s/internal, %s/cmd)", e.where, name, *srcDir, *srcDir)
		return
	}
	if !m.known {
		return
	}
	have := slices.Concat(m.labels, c.targetLabels, []string{"__name__"})
	switch {
	case m.kind == "Histogram" && name == base+"_bucket":
		have = append(have, "le")
	case m.kind == "Summary" && name == base:
		have = append(have, "quantile")
	}
	for _, lm := range vs.LabelMatchers {
		if !slices.Contains(have, lm.Name) {
			t.Errorf("%s: %s has no label %q (it has %v and the target labels)", e.where, name, lm.Name, m.labels)
		}
	}
}

// checkFleetGauge: a selector of a fleet-wide gauge sits under a max, min or
// avg that aggregates away the labels telling its processes apart; path is
// the selector's ancestors, outermost first.
func checkFleetGauge(t *testing.T, e promqlExpr, vs *promql.VectorSelector, path []promql.Node) {
	t.Helper()
	per, ok := fleetGauges[vs.Name]
	if !ok {
		return
	}
	var agg *promql.AggregateExpr
	for i := len(path) - 1; i >= 0 && agg == nil; i-- {
		agg, _ = path[i].(*promql.AggregateExpr)
	}
	switch {
	case agg == nil:
		t.Errorf("%s: %s is the same in every process that exports it: take its max without (%s)", e.where, vs.Name, strings.Join(per, ", "))
	case agg.Op != promql.MAX && agg.Op != promql.MIN && agg.Op != promql.AVG:
		t.Errorf("%s: %s(%s) counts a fleet-wide gauge once per process: take its max", e.where, agg.Op, vs.Name)
	default:
		for _, l := range per {
			if slices.Contains(agg.Grouping, l) != agg.Without {
				t.Errorf("%s: %s keeps label %q of %s, so each process is its own series: aggregate away %v", e.where, agg.Op, l, vs.Name, per)
			}
		}
	}
}

// lookup finds the metric a series belongs to: its own name, or a
// histogram's (or summary's) _bucket, _sum and _count. base is "" when none.
func lookup(metrics map[string]metric, series string) (metric, string) {
	if m, ok := metrics[series]; ok && m.kind != "Histogram" {
		return m, series
	}
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		base, ok := strings.CutSuffix(series, suffix)
		if !ok {
			continue
		}
		if m, ok := metrics[base]; ok && (m.kind == "Histogram" || m.kind == "Summary" && suffix != "_bucket") {
			return m, base
		}
	}
	return metric{}, ""
}

func selectorNames(node promql.Node) []string {
	var names []string
	promql.Inspect(node, func(n promql.Node, _ []promql.Node) error {
		if vs, ok := n.(*promql.VectorSelector); ok && vs.Name != "" {
			names = append(names, vs.Name)
		}
		return nil
	})
	return names
}

// exportedMetrics reads the gateway's Go sources (internal/ and cmd/, tests
// left out) for prometheus.<Kind>Opts literals whose Name starts with
// postgate_, and the labels of the New<Kind>Vec call each one is passed to.
func exportedMetrics(t *testing.T) map[string]metric {
	t.Helper()
	metrics := map[string]metric{}
	fset := token.NewFileSet()
	for _, dir := range []string{"internal", "cmd"} {
		root := filepath.Join(*srcDir, dir)
		err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
				return err
			}
			f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
			if err != nil {
				return err
			}
			pkg := importName(f, "github.com/prometheus/client_golang/prometheus")
			if pkg == "" {
				return nil
			}
			// Labels first: the Opts literal passed to prometheus.New*Vec(opts, labels).
			vecLabels := map[*ast.CompositeLit][]string{}
			ast.Inspect(f, func(n ast.Node) bool {
				call, ok := n.(*ast.CallExpr)
				if !ok || len(call.Args) != 2 || !isSelector(call.Fun, pkg, "New", "Vec") {
					return true
				}
				opts, ok1 := call.Args[0].(*ast.CompositeLit)
				names, ok2 := stringList(call.Args[1])
				if ok1 && ok2 {
					vecLabels[opts] = names
				}
				return true
			})
			ast.Inspect(f, func(n ast.Node) bool {
				lit, ok := n.(*ast.CompositeLit)
				if !ok || !isSelector(lit.Type, pkg, "", "Opts") {
					return true
				}
				kind := strings.TrimSuffix(lit.Type.(*ast.SelectorExpr).Sel.Name, "Opts")
				fields := map[string]ast.Expr{}
				for _, elt := range lit.Elts {
					if kv, ok := elt.(*ast.KeyValueExpr); ok {
						if k, ok := kv.Key.(*ast.Ident); ok {
							fields[k.Name] = kv.Value
						}
					}
				}
				var parts []string
				for _, field := range []string{"Namespace", "Subsystem", "Name"} {
					if s, ok := stringLit(fields[field]); ok && s != "" {
						parts = append(parts, s)
					} else if fields[field] != nil {
						t.Errorf("%s: %sOpts.%s is not a string literal: this test cannot read it", fset.Position(lit.Pos()), kind, field)
					}
				}
				name := strings.Join(parts, "_")
				if !strings.HasPrefix(name, "postgate_") {
					return true
				}
				m := metric{kind: kind, source: fset.Position(lit.Pos()).String()}
				m.labels, m.known = vecLabels[lit]
				if passedToPlainNew(f, lit, pkg) {
					m.known = true // a plain Counter, Gauge, ...: no variable labels
				}
				if cl, ok := fields["ConstLabels"].(*ast.CompositeLit); ok {
					for _, elt := range cl.Elts {
						if kv, ok := elt.(*ast.KeyValueExpr); ok {
							if s, ok := stringLit(kv.Key); ok {
								m.labels = append(m.labels, s)
							}
						}
					}
				} else if fields["ConstLabels"] != nil {
					m.known = false
				}
				if prev, dup := metrics[name]; dup {
					t.Errorf("%s: metric %s is also declared at %s", m.source, name, prev.source)
				}
				metrics[name] = m
				return true
			})
			return nil
		})
		if err != nil {
			t.Fatalf("read the gateway's metrics under %s: %v", root, err)
		}
	}
	return metrics
}

// passedToPlainNew reports whether lit is passed straight to a plain
// prometheus.NewCounter, NewGauge, NewHistogram, ... (not a New*Vec): a
// metric without variable labels. Opts passed anywhere else (a variable, a
// helper) have labels the test cannot know, unless a New*Vec call takes them.
func passedToPlainNew(f *ast.File, lit *ast.CompositeLit, pkg string) bool {
	plain := false
	ast.Inspect(f, func(n ast.Node) bool {
		call, ok := n.(*ast.CallExpr)
		if ok && len(call.Args) == 1 && call.Args[0] == lit && isSelector(call.Fun, pkg, "New", "") &&
			!strings.HasSuffix(call.Fun.(*ast.SelectorExpr).Sel.Name, "Vec") {
			plain = true
		}
		return !plain
	})
	return plain
}

// isSelector reports whether e is pkg.<prefix>...<suffix>.
func isSelector(e ast.Expr, pkg, prefix, suffix string) bool {
	sel, ok := e.(*ast.SelectorExpr)
	if !ok {
		return false
	}
	id, ok := sel.X.(*ast.Ident)
	return ok && id.Name == pkg && strings.HasPrefix(sel.Sel.Name, prefix) && strings.HasSuffix(sel.Sel.Name, suffix)
}

func importName(f *ast.File, path string) string {
	for _, imp := range f.Imports {
		if p, _ := strconv.Unquote(imp.Path.Value); p == path {
			if imp.Name != nil {
				return imp.Name.Name
			}
			return filepath.Base(path)
		}
	}
	return ""
}

func stringLit(e ast.Expr) (string, bool) {
	lit, ok := e.(*ast.BasicLit)
	if !ok || lit.Kind != token.STRING {
		return "", false
	}
	s, err := strconv.Unquote(lit.Value)
	return s, err == nil
}

// stringList reads []string{"a", "b"}.
func stringList(e ast.Expr) ([]string, bool) {
	lit, ok := e.(*ast.CompositeLit)
	if !ok {
		return nil, false
	}
	out := []string{}
	for _, elt := range lit.Elts {
		s, ok := stringLit(elt)
		if !ok {
			return nil, false
		}
		out = append(out, s)
	}
	return out, true
}
