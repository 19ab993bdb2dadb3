package chart

import (
	"bufio"
	"bytes"
	"flag"
	"fmt"
	"io"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	k8syaml "k8s.io/apimachinery/pkg/util/yaml"
)

var (
	helmBin  = flag.String("helm", "../../../bin/helm", "the helm binary (make helm-lint installs a pinned one)")
	chartDir = flag.String("chart", "../../postgate", "the chart to render")
)

// decoder decodes strictly: an unknown field, a duplicate field or a wrong
// type is an error, as `kubectl apply --validate=strict` would report.
var decoder = func() runtime.Decoder {
	scheme := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{
		corev1.AddToScheme, appsv1.AddToScheme, batchv1.AddToScheme, autoscalingv2.AddToScheme,
		policyv1.AddToScheme, networkingv1.AddToScheme, monitoringv1.AddToScheme,
	} {
		if err := add(scheme); err != nil {
			panic(err)
		}
	}
	return serializer.NewCodecFactory(scheme, serializer.EnableStrict).UniversalDeserializer()
}()

// manifest is one rendered document: where it came from and what it decoded to.
type manifest struct {
	source string
	obj    runtime.Object
}

// rendered is a whole release, by kind.
type rendered struct {
	all             []manifest
	deployments     map[string]*appsv1.Deployment // by role
	jobs            []*batchv1.Job
	configMaps      []*corev1.ConfigMap
	secrets         []*corev1.Secret
	services        []*corev1.Service
	serviceAccounts []*corev1.ServiceAccount
	hpas            []*autoscalingv2.HorizontalPodAutoscaler
	pdbs            []*policyv1.PodDisruptionBudget
	ingresses       []*networkingv1.Ingress
	netpols         []*networkingv1.NetworkPolicy
	serviceMonitors []*monitoringv1.ServiceMonitor
	rules           []*monitoringv1.PrometheusRule
}

// helmTemplate renders the chart with extra helm arguments; it returns the
// output and helm's error (stderr included), so tests can expect failures.
func helmTemplate(t *testing.T, args ...string) ([]byte, error) {
	t.Helper()
	full := append([]string{"template", "rel", *chartDir, "--namespace", "postgate"}, args...)
	cmd := exec.Command(*helmBin, full...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return out, fmt.Errorf("helm %s: %v\n%s", strings.Join(full, " "), err, stderr.String())
	}
	return out, nil
}

// render renders and strictly decodes every document; any document that
// does not decode fails the test.
func render(t *testing.T, args ...string) rendered {
	t.Helper()
	out, err := helmTemplate(t, args...)
	if err != nil {
		t.Fatal(err)
	}
	return decodeAll(t, out)
}

func decodeAll(t *testing.T, out []byte) rendered {
	t.Helper()
	r := rendered{deployments: map[string]*appsv1.Deployment{}}
	reader := k8syaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(out)))
	for {
		doc, err := reader.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("split rendered YAML: %v", err)
		}
		source := "?"
		for line := range strings.SplitSeq(string(doc), "\n") {
			if s, ok := strings.CutPrefix(line, "# Source: "); ok {
				source = s
			}
		}
		if isEmptyDoc(doc) {
			continue
		}
		obj, gvk, err := decoder.Decode(doc, nil, nil)
		if err != nil {
			t.Errorf("%s: %v\n%s", source, err, doc)
			continue
		}
		r.all = append(r.all, manifest{source: source, obj: obj})
		switch o := obj.(type) {
		case *appsv1.Deployment:
			r.deployments[o.Labels["app.kubernetes.io/component"]] = o
		case *batchv1.Job:
			r.jobs = append(r.jobs, o)
		case *corev1.ConfigMap:
			r.configMaps = append(r.configMaps, o)
		case *corev1.Secret:
			r.secrets = append(r.secrets, o)
		case *corev1.Service:
			r.services = append(r.services, o)
		case *corev1.ServiceAccount:
			r.serviceAccounts = append(r.serviceAccounts, o)
		case *autoscalingv2.HorizontalPodAutoscaler:
			r.hpas = append(r.hpas, o)
		case *policyv1.PodDisruptionBudget:
			r.pdbs = append(r.pdbs, o)
		case *networkingv1.Ingress:
			r.ingresses = append(r.ingresses, o)
		case *networkingv1.NetworkPolicy:
			r.netpols = append(r.netpols, o)
		case *monitoringv1.ServiceMonitor:
			r.serviceMonitors = append(r.serviceMonitors, o)
		case *monitoringv1.PrometheusRule:
			r.rules = append(r.rules, o)
		default:
			t.Errorf("%s: %s is not checked by this test: add it", source, gvk)
		}
	}
	if t.Failed() {
		t.FailNow()
	}
	return r
}

// isEmptyDoc reports a document holding only comments and blank lines.
func isEmptyDoc(doc []byte) bool {
	for line := range strings.SplitSeq(string(doc), "\n") {
		line = strings.TrimSpace(line)
		if line != "" && line != "---" && !strings.HasPrefix(line, "#") {
			return false
		}
	}
	return true
}

func valuesFile(name string) string {
	return filepath.Join(*chartDir, "ci", name)
}
