#!/usr/bin/env bash
# Offline chart checks (make helm-lint): a pinned helm installed with go install
# into bin/ (cached), helm lint of the default values and of a values file that
# turns every option on, and the Go test in helm/test (its own module, so the
# Kubernetes types stay out of the gateway's go.mod) that renders the chart and
# strictly decodes every manifest into k8s.io/api types.
set -euo pipefail
cd "$(dirname "$0")/.."

HELM_VERSION=${HELM_VERSION:-v3.22.0}
# The Kubernetes version helm assumes by default (.Capabilities.KubeVersion):
# without these ldflags a go-installed helm says v1.20 (research/libraries.md).
K8S_MAJOR=1
K8S_MINOR=37
helm=$PWD/bin/helm
chart=helm/postgate

if [ "$("$helm" version --template '{{.Version}}' 2>/dev/null || true)" != "$HELM_VERSION" ]; then
  echo "installing helm $HELM_VERSION into bin/ (about 1.5 min on a cold module cache)"
  GOBIN=$PWD/bin go install -ldflags "-s -w \
    -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION \
    -X helm.sh/helm/v3/internal/version.gitTreeState=clean \
    -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=$K8S_MAJOR \
    -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=$K8S_MINOR \
    -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=$K8S_MAJOR \
    -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=$K8S_MINOR" \
    "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
fi

"$helm" lint --strict "$chart"
"$helm" lint --strict "$chart" -f "$chart/ci/all-on-values.yaml"

cd helm/test
out=$(gofmt -l .); if [ -n "$out" ]; then echo "gofmt wants changes in helm/test:"; echo "$out"; exit 1; fi
go vet ./...
go test -count=1 ./chart/ -helm="$helm" -chart="$PWD/../postgate"
