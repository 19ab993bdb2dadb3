package chart

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
)

// secretEnv are the settings that must only ever come from a Secret.
var secretEnv = []string{"DATABASE_URL", "REDIS_URL", "ADMIN_JWT_SECRET", "SECRET_KEY", "SECRET_KEY_PREVIOUS"}

// wantAlerts are the alerts the chart ships (README "Deploy", Alerts).
var wantAlerts = []string{
	"PostgateWebhookNon200", "PostgateSignatureFailures", "PostgateWebhookAckSlow",
	"PostgateDeliveryBacklogOld", "PostgateDeadEvents", "PostgateEndpointBreakerOpen",
	"PostgateEndpointsDisabled", "PostgateAppSilent", "PostgateTargetDown",
	"PostgateMetaSubscriptionInactive", "PostgatePageSilent", "PostgateMetaChecksFailing",
}

// metaAlerts are the Meta set-up and health alerts with their severity: each
// tells the operator what to do by pointing at docs/meta-setup.md.
var metaAlerts = map[string]string{
	"PostgateMetaSubscriptionInactive": "critical",
	"PostgatePageSilent":               "warning",
	"PostgateMetaChecksFailing":        "warning",
}

// metaRow is the dashboard row of the Meta health signals, and the metrics
// its panels must read.
const metaRow = "Meta subscriptions"

var metaRowMetrics = []string{
	"postgate_meta_subscription_active", "postgate_meta_pages_silent",
	"postgate_meta_pages_unhealthy", "postgate_meta_check_errors_total",
}

// docLink is a page of the repository's docs named in an alert's text.
var docLink = regexp.MustCompile(`docs/[\w.-]+\.md`)

func TestDefaultValues(t *testing.T) {
	r := render(t)
	checkInvariants(t, r, "")

	if len(r.ingresses)+len(r.netpols)+len(r.serviceMonitors)+len(r.rules) != 0 {
		t.Errorf("default values render optional objects: %d Ingress, %d NetworkPolicy, %d ServiceMonitor, %d PrometheusRule",
			len(r.ingresses), len(r.netpols), len(r.serviceMonitors), len(r.rules))
	}
	if got := len(r.hpas); got != 2 {
		t.Errorf("got %d HorizontalPodAutoscalers, want 2 (ingress and worker)", got)
	}
	if got := len(r.pdbs); got != 2 {
		t.Errorf("got %d PodDisruptionBudgets, want 2", got)
	}
	if got := len(r.serviceAccounts); got != 1 {
		t.Errorf("got %d ServiceAccounts, want 1", got)
	}
	for _, cm := range r.configMaps {
		if _, ok := cm.Data["PUBLIC_URL"]; ok {
			t.Errorf("ConfigMap %s sets PUBLIC_URL without publicURL or an ingress", cm.Name)
		}
	}
}

func TestAllOptionsOn(t *testing.T) {
	r := render(t, "-f", valuesFile("all-on-values.yaml"))
	checkInvariants(t, r, "")

	counts := map[string]int{
		"Ingress": len(r.ingresses), "NetworkPolicy": len(r.netpols), "ServiceMonitor": len(r.serviceMonitors),
		"PrometheusRule": len(r.rules), "HorizontalPodAutoscaler": len(r.hpas), "PodDisruptionBudget": len(r.pdbs),
	}
	want := map[string]int{"Ingress": 1, "NetworkPolicy": 2, "ServiceMonitor": 1, "PrometheusRule": 1,
		"HorizontalPodAutoscaler": 2, "PodDisruptionBudget": 2}
	for kind, n := range want {
		if counts[kind] != n {
			t.Errorf("got %d %s, want %d", counts[kind], kind, n)
		}
	}

	ing := r.ingresses[0]
	if len(ing.Spec.TLS) == 0 {
		t.Error("Ingress has no TLS")
	}
	if got := configValue(r, "PUBLIC_URL"); got != "https://hooks.example.com" {
		t.Errorf("PUBLIC_URL = %q, want https://hooks.example.com (derived from the TLS ingress host)", got)
	}
	if got := r.deployments["ingress"].Spec.Template.Spec.Containers[0].Image; !strings.Contains(got, "@sha256:") {
		t.Errorf("image %q is not pinned by digest", got)
	}

	// Every key of the chart's Secret is set, and no ConfigMap repeats any.
	s := chartSecret(r)
	if s == nil {
		t.Fatal("no chart-managed Secret")
	}
	for _, k := range secretEnv {
		if len(s.Data[k]) == 0 {
			t.Errorf("Secret %s has no %s", s.Name, k)
		}
	}

	var alerts []string
	for _, g := range r.rules[0].Spec.Groups {
		for _, rule := range g.Rules {
			alerts = append(alerts, rule.Alert)
			if rule.Alert == "" || rule.Alert == "PostgateRedisErrors" { // a record, or the extra rule
				continue
			}
			if rule.Labels["severity"] == "" || rule.Annotations["summary"] == "" {
				t.Errorf("alert %s: want a severity label and a summary", rule.Alert)
			}
			if sev, ok := metaAlerts[rule.Alert]; ok {
				if rule.Labels["severity"] != sev {
					t.Errorf("alert %s: severity %q, want %q", rule.Alert, rule.Labels["severity"], sev)
				}
				if !strings.Contains(rule.Annotations["description"], "docs/meta-setup.md") {
					t.Errorf("alert %s: the description does not point to docs/meta-setup.md", rule.Alert)
				}
			}
			for _, text := range rule.Annotations {
				for _, doc := range docLink.FindAllString(text, -1) {
					if _, err := os.Stat(filepath.Join(*srcDir, doc)); err != nil {
						t.Errorf("alert %s points to %s, which is not in the repository: %v", rule.Alert, doc, err)
					}
				}
			}
		}
	}
	for _, a := range wantAlerts {
		if !slices.Contains(alerts, a) {
			t.Errorf("PrometheusRule lacks alert %s (has %v)", a, alerts)
		}
	}
	if !slices.Contains(alerts, "PostgateRedisErrors") {
		t.Error("metrics.prometheusRule.extraRules were not appended")
	}

	var dashboards int
	for _, cm := range r.configMaps {
		for k, v := range cm.Data {
			if strings.HasSuffix(k, ".json") {
				dashboards++
				var d struct {
					Title  string      `json:"title"`
					Panels []gridPanel `json:"panels"`
				}
				if err := json.Unmarshal([]byte(v), &d); err != nil || d.Title == "" || len(d.Panels) == 0 {
					t.Errorf("dashboard %s/%s is not a Grafana dashboard: %v", cm.Name, k, err)
				}
				checkPanelLayout(t, cm.Name+"/"+k, d.Panels)
				checkRowReads(t, cm.Name+"/"+k, v, metaRow, metaRowMetrics)
			}
		}
	}
	if dashboards != 1 {
		t.Errorf("got %d dashboard ConfigMaps, want 1", dashboards)
	}

	// The worker's extra HPA metric (the backlog) is kept next to CPU.
	for _, h := range r.hpas {
		if strings.HasSuffix(h.Name, "-worker") && len(h.Spec.Metrics) != 2 {
			t.Errorf("worker HPA has %d metrics, want CPU and the backlog", len(h.Spec.Metrics))
		}
	}
}

func TestExistingSecret(t *testing.T) {
	r := render(t, "--set", "existingSecret=postgate-secrets", "--set", "secretKeys.databaseURL=uri",
		"--set", "deployments.ingress.autoscaling.enabled=false", "--set", "deployments.ingress.replicas=3")
	checkInvariants(t, r, "postgate-secrets")
	if len(r.secrets) != 0 {
		t.Errorf("existingSecret set, but the chart renders %d Secrets", len(r.secrets))
	}
	if got := r.deployments["ingress"].Spec.Replicas; got == nil || *got != 3 {
		t.Errorf("ingress replicas = %v, want 3 without autoscaling", got)
	}
	if got := len(r.hpas); got != 1 {
		t.Errorf("got %d HPAs, want 1 (worker only)", got)
	}
	env := envByName(r.jobs[0].Spec.Template.Spec.Containers[0].Env)
	if ref := env["DATABASE_URL"].ValueFrom.SecretKeyRef; ref.Name != "postgate-secrets" || ref.Key != "uri" {
		t.Errorf("migration Job reads DATABASE_URL from %s/%s, want postgate-secrets/uri", ref.Name, ref.Key)
	}
}

// TestRefusedValues: mistakes fail at `helm install`, in words.
func TestRefusedValues(t *testing.T) {
	tests := []struct {
		name, set, want string
	}{
		{"secret in the ConfigMap", "config.DATABASE_URL=postgres://x", "config"},
		{"misspelt key", "deployments.ingres.replicas=3", "ingres"},
		{"short JWT secret", "secret.adminJWTSecret=short", "adminJWTSecret"},
		{"grace period shorter than the drain", "deployments.ingress.terminationGracePeriodSeconds=20", "terminationGracePeriodSeconds"},
		{"publicURL without scheme", "publicURL=hooks.example.com", "publicURL"},
		{"Meta checks alert that one failed run fires", "metrics.prometheusRule.rules.metaChecksFailingMinutes=10", "metaChecksFailingMinutes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := helmTemplate(t, "--set", tt.set)
			if err == nil {
				t.Fatalf("--set %s rendered; want it refused", tt.set)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("--set %s: the error does not name %q:\n%v", tt.set, tt.want, err)
			}
		})
	}
}

// checkInvariants asserts what must hold for any values: both roles, probes,
// a locked-down security context, secrets only from Secrets, the migration
// hook, and selectors that select something.
func checkInvariants(t *testing.T, r rendered, existingSecret string) {
	t.Helper()
	if len(r.deployments) != 2 || r.deployments["ingress"] == nil || r.deployments["worker"] == nil {
		t.Fatalf("want exactly the ingress and worker Deployments, got %v", keys(r.deployments))
	}
	secretValues := map[string]bool{}
	secretsByName := map[string]*corev1.Secret{}
	for _, s := range r.secrets {
		secretsByName[s.Name] = s
		for _, v := range s.Data {
			if len(v) >= 8 {
				secretValues[string(v)] = true
			}
		}
	}
	configMaps := map[string]*corev1.ConfigMap{}
	for _, cm := range r.configMaps {
		configMaps[cm.Name] = cm
		for k, v := range cm.Data {
			if slices.Contains(secretEnv, k) {
				t.Errorf("ConfigMap %s holds the secret %s", cm.Name, k)
			}
			for sv := range secretValues {
				if strings.Contains(v, sv) {
					t.Errorf("ConfigMap %s key %s holds a value of a Secret", cm.Name, k)
				}
			}
		}
	}

	for role, d := range r.deployments {
		pod := d.Spec.Template
		if !selects(d.Spec.Selector, pod.Labels) {
			t.Errorf("%s: selector %v does not select its pods %v", d.Name, d.Spec.Selector, pod.Labels)
		}
		checkPodSecurity(t, d.Name, pod.Spec)
		if len(pod.Spec.Containers) != 1 {
			t.Fatalf("%s: want one container", d.Name)
		}
		c := pod.Spec.Containers[0]
		if len(c.Args) == 0 || c.Args[0] != "serve" || !slices.Contains(c.Args, "--role="+role) || !slices.Contains(c.Args, "--migrate=false") {
			t.Errorf("%s: args %q, want serve --role=%s --migrate=false", d.Name, c.Args, role)
		}
		checkProbe(t, d.Name+" startupProbe", c.StartupProbe, "")
		checkProbe(t, d.Name+" livenessProbe", c.LivenessProbe, "/healthz")
		checkProbe(t, d.Name+" readinessProbe", c.ReadinessProbe, "/readyz")
		if c.Resources.Requests.Cpu().IsZero() || c.Resources.Requests.Memory().IsZero() {
			t.Errorf("%s: no CPU or memory request (the HPA needs the CPU one)", d.Name)
		}
		ports := map[string]int32{}
		for _, p := range c.Ports {
			ports[p.Name] = p.ContainerPort
		}
		if ports["http"] != 8080 || ports["metrics"] != 9090 {
			t.Errorf("%s: ports %v, want http 8080 and metrics 9090", d.Name, ports)
		}

		env := envByName(c.Env)
		for _, name := range secretEnv {
			e, ok := env[name]
			switch {
			case !ok:
				t.Errorf("%s: %s is not set", d.Name, name)
			case e.Value != "" || e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil:
				t.Errorf("%s: %s does not come from a Secret", d.Name, name)
			default:
				checkSecretRef(t, d.Name, name, e.ValueFrom.SecretKeyRef, existingSecret, secretsByName)
			}
		}
		for _, ef := range c.EnvFrom {
			if ef.SecretRef != nil {
				t.Errorf("%s: envFrom a whole Secret; name each key instead", d.Name)
			}
			if ef.ConfigMapRef != nil && configMaps[ef.ConfigMapRef.Name] == nil {
				t.Errorf("%s: envFrom ConfigMap %s is not rendered", d.Name, ef.ConfigMapRef.Name)
			}
		}

		// Shutdown: preStop sleep, then SHUTDOWN_DELAY, then SHUTDOWN_TIMEOUT,
		// all within the grace period.
		drain := seconds(t, env["SHUTDOWN_DELAY"].Value) + seconds(t, env["SHUTDOWN_TIMEOUT"].Value)
		if c.Lifecycle != nil && c.Lifecycle.PreStop != nil {
			if c.Lifecycle.PreStop.Sleep == nil {
				t.Errorf("%s: preStop must be a sleep action (the image has no shell)", d.Name)
			} else {
				drain += c.Lifecycle.PreStop.Sleep.Seconds
			}
		} else if role == "ingress" {
			t.Errorf("%s: no preStop delay", d.Name)
		}
		if g := pod.Spec.TerminationGracePeriodSeconds; g == nil || *g <= drain {
			t.Errorf("%s: terminationGracePeriodSeconds %v is not longer than the drain (%d s)", d.Name, g, drain)
		}

		if len(pod.Spec.TopologySpreadConstraints) == 0 {
			t.Errorf("%s: no topology spread constraints", d.Name)
		}
		for _, tsc := range pod.Spec.TopologySpreadConstraints {
			if !selects(tsc.LabelSelector, pod.Labels) {
				t.Errorf("%s: topology spread on %s does not select its own pods", d.Name, tsc.TopologyKey)
			}
		}
	}

	// The migration hook: before install and upgrade, `migrate up`.
	if len(r.jobs) != 1 {
		t.Fatalf("got %d Jobs, want the migration hook", len(r.jobs))
	}
	job := r.jobs[0]
	hooks := strings.Split(job.Annotations["helm.sh/hook"], ",")
	if !slices.Contains(hooks, "pre-install") || !slices.Contains(hooks, "pre-upgrade") {
		t.Errorf("Job %s: helm.sh/hook = %q, want pre-install,pre-upgrade", job.Name, job.Annotations["helm.sh/hook"])
	}
	js := job.Spec.Template.Spec
	checkPodSecurity(t, job.Name, js)
	if js.RestartPolicy != corev1.RestartPolicyNever {
		t.Errorf("Job %s: restartPolicy %s", job.Name, js.RestartPolicy)
	}
	if got := js.Containers[0].Args; !slices.Equal(got, []string{"migrate", "up"}) {
		t.Errorf("Job %s: args %q, want migrate up", job.Name, got)
	}
	if job.Spec.ActiveDeadlineSeconds == nil {
		t.Errorf("Job %s: no activeDeadlineSeconds: a stuck migration would hang helm", job.Name)
	}
	dbEnv := envByName(js.Containers[0].Env)["DATABASE_URL"]
	if dbEnv.Value != "" || dbEnv.ValueFrom == nil || dbEnv.ValueFrom.SecretKeyRef == nil {
		t.Fatalf("Job %s: DATABASE_URL does not come from a Secret", job.Name)
	}
	ref := dbEnv.ValueFrom.SecretKeyRef
	if existingSecret != "" {
		if ref.Name != existingSecret {
			t.Errorf("Job %s reads Secret %s, want %s", job.Name, ref.Name, existingSecret)
		}
	} else if s := secretsByName[ref.Name]; s == nil {
		t.Errorf("Job %s reads Secret %s, which is not rendered", job.Name, ref.Name)
	} else if !strings.Contains(s.Annotations["helm.sh/hook"], "pre-install") ||
		weight(s.Annotations) >= weight(job.Annotations) {
		// A pre-install hook runs before the release's ordinary objects exist.
		t.Errorf("Job %s reads Secret %s, which is not a pre-install hook created before it", job.Name, ref.Name)
	}
	if sa := js.ServiceAccountName; sa != "" && sa != "default" {
		for _, a := range r.serviceAccounts {
			if a.Name == sa {
				t.Errorf("Job %s uses ServiceAccount %s, which the release creates after pre-install hooks", job.Name, sa)
			}
		}
	}

	// Services: the public one never exposes the metrics (and pprof) port.
	for _, s := range r.services {
		if !selectsAnyDeployment(r, &metav1.LabelSelector{MatchLabels: s.Spec.Selector}) {
			t.Errorf("Service %s selects no gateway pods", s.Name)
		}
		for _, p := range s.Spec.Ports {
			metricsPort := p.TargetPort.String() == "metrics" || p.TargetPort.IntValue() == 9090
			if metricsPort != (s.Labels["app.kubernetes.io/component"] == "metrics") {
				t.Errorf("Service %s port %s: the metrics port belongs to the metrics Service only", s.Name, p.Name)
			}
		}
	}
	for _, ing := range r.ingresses {
		for _, rule := range ing.Spec.Rules {
			for _, p := range rule.HTTP.Paths {
				if p.Backend.Service == nil || p.Backend.Service.Port.Name != "http" {
					t.Errorf("Ingress %s path %s must route to a Service's http port", ing.Name, p.Path)
				}
				for _, private := range []string{"/metrics", "/debug", "/healthz", "/readyz"} {
					if strings.HasPrefix(p.Path, private) || p.Path == "/" {
						t.Errorf("Ingress %s exposes %s", ing.Name, p.Path)
					}
				}
			}
		}
	}
	for _, h := range r.hpas {
		d := deploymentNamed(r, h.Spec.ScaleTargetRef.Name)
		if d == nil || h.Spec.ScaleTargetRef.Kind != "Deployment" {
			t.Errorf("HPA %s scales %s %s, which is not rendered", h.Name, h.Spec.ScaleTargetRef.Kind, h.Spec.ScaleTargetRef.Name)
			continue
		}
		if d.Spec.Replicas != nil {
			t.Errorf("Deployment %s sets replicas while HPA %s scales it (every upgrade would reset the scale)", d.Name, h.Name)
		}
		if h.Spec.MinReplicas == nil || *h.Spec.MinReplicas > h.Spec.MaxReplicas {
			t.Errorf("HPA %s: minReplicas %v, maxReplicas %d", h.Name, h.Spec.MinReplicas, h.Spec.MaxReplicas)
		}
	}
	for _, p := range r.pdbs {
		if !selectsAnyDeployment(r, p.Spec.Selector) {
			t.Errorf("PodDisruptionBudget %s selects no gateway pods", p.Name)
		}
	}
	for _, np := range r.netpols {
		if !selectsAnyDeployment(r, &np.Spec.PodSelector) {
			t.Errorf("NetworkPolicy %s selects no gateway pods", np.Name)
		}
	}
	for _, sm := range r.serviceMonitors {
		var found bool
		for _, s := range r.services {
			if selects(&sm.Spec.Selector, s.Labels) {
				found = true
				for _, ep := range sm.Spec.Endpoints {
					if !slices.ContainsFunc(s.Spec.Ports, func(p corev1.ServicePort) bool { return p.Name == ep.Port }) {
						t.Errorf("ServiceMonitor %s scrapes port %q, which Service %s lacks", sm.Name, ep.Port, s.Name)
					}
				}
			}
		}
		if !found {
			t.Errorf("ServiceMonitor %s selects no Service", sm.Name)
		}
	}
	for _, pr := range r.rules {
		seen := map[string]bool{}
		for _, g := range pr.Spec.Groups {
			for _, rule := range g.Rules {
				if strings.TrimSpace(rule.Expr.String()) == "" {
					t.Errorf("PrometheusRule %s: %s has no expr", pr.Name, rule.Alert)
				}
				if seen[rule.Alert] {
					t.Errorf("PrometheusRule %s: alert %s twice", pr.Name, rule.Alert)
				}
				seen[rule.Alert] = true
			}
		}
	}
	for _, m := range r.all {
		obj, ok := m.obj.(metav1.Object)
		if !ok {
			continue
		}
		if obj.GetLabels()["app.kubernetes.io/instance"] != "rel" || obj.GetLabels()["app.kubernetes.io/name"] == "" {
			t.Errorf("%s: %s lacks the standard labels", m.source, obj.GetName())
		}
	}
}

// gridPanel is where a dashboard panel sits.
type gridPanel struct {
	ID      int    `json:"id"`
	Title   string `json:"title"`
	GridPos struct {
		X, Y, W, H int
	} `json:"gridPos"`
}

// checkPanelLayout: panel ids are unique (Grafana links and edits panels by
// id), and every panel fits the 24-column grid without overlapping another.
func checkPanelLayout(t *testing.T, dashboard string, panels []gridPanel) {
	t.Helper()
	ids := map[int]string{}
	for i, p := range panels {
		if prev, dup := ids[p.ID]; dup {
			t.Errorf("dashboard %s: panels %q and %q share id %d", dashboard, prev, p.Title, p.ID)
		}
		ids[p.ID] = p.Title
		g := p.GridPos
		if g.W <= 0 || g.H <= 0 || g.X < 0 || g.Y < 0 || g.X+g.W > 24 {
			t.Errorf("dashboard %s: panel %q has gridPos %+v, outside the 24-column grid", dashboard, p.Title, g)
		}
		for _, q := range panels[:i] {
			h := q.GridPos
			if g.X < h.X+h.W && h.X < g.X+g.W && g.Y < h.Y+h.H && h.Y < g.Y+g.H {
				t.Errorf("dashboard %s: panels %q and %q overlap", dashboard, q.Title, p.Title)
			}
		}
	}
}

// checkRowReads: the dashboard has a row titled row, and its panels (those
// after it up to the next row, or inside it when collapsed) read each of
// metrics.
func checkRowReads(t *testing.T, dashboard, text, row string, metrics []string) {
	t.Helper()
	type panel struct {
		Type    string `json:"type"`
		Title   string `json:"title"`
		Targets []struct {
			Expr string `json:"expr"`
		} `json:"targets"`
		Panels []json.RawMessage `json:"panels"`
	}
	var d struct {
		Panels []json.RawMessage `json:"panels"`
	}
	if err := json.Unmarshal([]byte(text), &d); err != nil {
		t.Errorf("dashboard %s: %v", dashboard, err)
		return
	}
	decode := func(raw json.RawMessage) panel {
		var p panel
		if err := json.Unmarshal(raw, &p); err != nil {
			t.Errorf("dashboard %s: %v", dashboard, err)
		}
		return p
	}
	var found bool
	var exprs []string
	for i := 0; i < len(d.Panels); i++ {
		p := decode(d.Panels[i])
		if p.Type != "row" || p.Title != row {
			continue
		}
		found = true
		inside := p.Panels // a collapsed row holds its panels
		for j := i + 1; j < len(d.Panels); j++ {
			if q := decode(d.Panels[j]); q.Type != "row" {
				inside = append(inside, d.Panels[j])
				continue
			}
			break
		}
		for _, raw := range inside {
			for _, tg := range decode(raw).Targets {
				exprs = append(exprs, tg.Expr)
			}
		}
	}
	if !found {
		t.Errorf("dashboard %s has no row %q", dashboard, row)
		return
	}
	for _, m := range metrics {
		reads := regexp.MustCompile(`\b` + m + `\b`)
		if !slices.ContainsFunc(exprs, reads.MatchString) {
			t.Errorf("dashboard %s: no panel of row %q reads %s", dashboard, row, m)
		}
	}
}

// checkPodSecurity: non-root, seccomp RuntimeDefault, read-only root
// filesystem, no privilege escalation, every capability dropped, no API token.
func checkPodSecurity(t *testing.T, name string, spec corev1.PodSpec) {
	t.Helper()
	psc := spec.SecurityContext
	if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot || psc.RunAsUser == nil || *psc.RunAsUser == 0 {
		t.Errorf("%s: pod must run as a non-root user", name)
	}
	if psc == nil || psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("%s: pod seccomp profile must be RuntimeDefault", name)
	}
	if spec.AutomountServiceAccountToken == nil || *spec.AutomountServiceAccountToken {
		t.Errorf("%s: mounts a ServiceAccount token; the gateway never calls the API", name)
	}
	if spec.HostNetwork || spec.HostPID || spec.HostIPC {
		t.Errorf("%s: uses host namespaces", name)
	}
	for _, c := range spec.Containers {
		sc := c.SecurityContext
		switch {
		case sc == nil:
			t.Errorf("%s/%s: no securityContext", name, c.Name)
			continue
		case sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem:
			t.Errorf("%s/%s: root filesystem is writable", name, c.Name)
		case sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation:
			t.Errorf("%s/%s: allows privilege escalation", name, c.Name)
		case sc.Privileged != nil && *sc.Privileged:
			t.Errorf("%s/%s: privileged", name, c.Name)
		case sc.RunAsUser != nil && *sc.RunAsUser == 0:
			t.Errorf("%s/%s: runs as root", name, c.Name)
		case sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") || len(sc.Capabilities.Add) > 0:
			t.Errorf("%s/%s: capabilities must drop ALL and add none", name, c.Name)
		}
	}
}

func checkProbe(t *testing.T, what string, p *corev1.Probe, path string) {
	t.Helper()
	switch {
	case p == nil:
		t.Errorf("%s: missing", what)
	case p.HTTPGet == nil:
		t.Errorf("%s: want an httpGet probe (the image has no shell)", what)
	case p.HTTPGet.Port.String() != "http" && p.HTTPGet.Port.IntValue() != 8080:
		t.Errorf("%s: probes port %s, want http", what, p.HTTPGet.Port.String())
	case path != "" && p.HTTPGet.Path != path:
		t.Errorf("%s: path %s, want %s", what, p.HTTPGet.Path, path)
	}
}

func checkSecretRef(t *testing.T, owner, env string, ref *corev1.SecretKeySelector, existingSecret string, rendered map[string]*corev1.Secret) {
	t.Helper()
	if existingSecret != "" {
		if ref.Name != existingSecret {
			t.Errorf("%s: %s from Secret %s, want %s", owner, env, ref.Name, existingSecret)
		}
		return
	}
	s := rendered[ref.Name]
	if s == nil {
		t.Errorf("%s: %s from Secret %s, which is not rendered", owner, env, ref.Name)
		return
	}
	if s.Annotations["helm.sh/hook"] != "" {
		t.Errorf("%s: %s from Secret %s, a hook that Helm deletes", owner, env, ref.Name)
	}
	optional := ref.Optional != nil && *ref.Optional
	if _, ok := s.Data[ref.Key]; !ok && !optional && len(s.Data) > 0 {
		t.Errorf("%s: %s from key %s, which Secret %s lacks", owner, env, ref.Key, s.Name)
	}
}

func selects(sel *metav1.LabelSelector, set map[string]string) bool {
	if sel == nil || (len(sel.MatchLabels) == 0 && len(sel.MatchExpressions) == 0) {
		return false
	}
	s, err := metav1.LabelSelectorAsSelector(sel)
	if err != nil {
		return false
	}
	return s.Matches(labels.Set(set))
}

func selectsAnyDeployment(r rendered, sel *metav1.LabelSelector) bool {
	for _, d := range r.deployments {
		if selects(sel, d.Spec.Template.Labels) {
			return true
		}
	}
	return false
}

func deploymentNamed(r rendered, name string) *appsv1.Deployment {
	for _, d := range r.deployments {
		if d.Name == name {
			return d
		}
	}
	return nil
}

func chartSecret(r rendered) *corev1.Secret {
	for _, s := range r.secrets {
		if s.Annotations["helm.sh/hook"] == "" {
			return s
		}
	}
	return nil
}

func configValue(r rendered, key string) string {
	for _, cm := range r.configMaps {
		if v, ok := cm.Data[key]; ok {
			return v
		}
	}
	return ""
}

func envByName(env []corev1.EnvVar) map[string]corev1.EnvVar {
	m := make(map[string]corev1.EnvVar, len(env))
	for _, e := range env {
		m[e.Name] = e
	}
	return m
}

func seconds(t *testing.T, v string) int64 {
	t.Helper()
	d, err := time.ParseDuration(v)
	if err != nil {
		t.Errorf("duration %q: %v", v, err)
	}
	return int64(d.Seconds())
}

func weight(annotations map[string]string) int {
	w, _ := strconv.Atoi(annotations["helm.sh/hook-weight"])
	return w
}

func keys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
