#!/usr/bin/env bash
# The container image without a Docker daemon (make image): a static gateway
# binary and a CA bundle in one layer on an empty base, user 65532, written
# by helm/test/cmd/mkimage (go-containerregistry, the library behind crane) as
# an OCI layout (bin/image/oci) and a `docker load` tarball
# (bin/image/postgate.tar); then the test that reads them back.
# Push with: crane push bin/image/postgate.tar REGISTRY/postgate:TAG
#   (or skopeo copy oci:bin/image/oci docker://REGISTRY/postgate:TAG).
set -euo pipefail
cd "$(dirname "$0")/.."

VERSION=${VERSION:-dev}
COMMIT=${COMMIT:-unknown}
IMAGE=${IMAGE:-ghcr.io/postgate/postgate:$VERSION}
out=$PWD/bin/image
mkdir -p "$out"

# The CA bundle that goes into the image (tenant callbacks are https).
if [ ! -s /etc/ssl/certs/ca-certificates.crt ]; then
  echo "installing ca-certificates from Debian's packages"
  as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq ca-certificates >/dev/null
fi

CGO_ENABLED=0 GOOS=linux go build -trimpath \
  -ldflags "-s -w -X main.version=$VERSION -X main.commit=$COMMIT" \
  -o "$out/gateway" ./cmd/gateway

cd helm/test
go run ./cmd/mkimage -binary "$out/gateway" -layout "$out/oci" -tarball "$out/postgate.tar" \
  -tag "$IMAGE" -version "$VERSION" -revision "$COMMIT"
go test -count=1 ./image/ -layout "$out/oci" -tarball "$out/postgate.tar"
