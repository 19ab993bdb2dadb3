# syntax=docker/dockerfile:1
# The gateway image for people with Docker: docker build -t postgate .
# CI builds the same image without a daemon (make image); both have the
# same contract, which the Helm chart relies on: ENTRYPOINT /gateway, a
# static binary, user 65532:65532, nothing writable, no shell.

ARG GO_VERSION=1.26

FROM --platform=$BUILDPLATFORM golang:${GO_VERSION} AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
ARG TARGETOS=linux
ARG TARGETARCH
ARG VERSION=dev
ARG COMMIT=unknown
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH \
    go build -trimpath -ldflags "-s -w -X main.version=${VERSION} -X main.commit=${COMMIT}" \
      -o /out/gateway ./cmd/gateway

# distroless/static: CA certificates, tzdata, /etc/passwd with nonroot
# (65532), no shell, no package manager.
FROM gcr.io/distroless/static-debian12:nonroot
ARG VERSION=dev
ARG COMMIT=unknown
LABEL org.opencontainers.image.title="postgate" \
      org.opencontainers.image.source="https://github.com/postgate/postgate" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${COMMIT}"
COPY --from=build /out/gateway /gateway
USER 65532:65532
EXPOSE 8080 9090
ENTRYPOINT ["/gateway"]
CMD ["serve"]
