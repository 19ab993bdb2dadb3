// Command mkimage builds the gateway's container image without a Docker
// daemon or a registry: one layer (the static binary, a CA bundle for
// outgoing TLS, and passwd/group entries for the nonroot user) on an empty
// base, written as an OCI image layout and as a `docker load` tarball.
// It uses go-containerregistry, the library behind crane.
//
//	mkimage -binary bin/image/gateway -cacerts /etc/ssl/certs/ca-certificates.crt \
//	  -layout bin/image/oci -tarball bin/image/postgate.tar -tag ghcr.io/postgate/postgate:dev
package main

import (
	"archive/tar"
	"bytes"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// The image's contract, shared with the Dockerfile and the Helm chart.
const (
	binaryPath = "/gateway"
	user       = "65532:65532"
	caPath     = "/etc/ssl/certs/ca-certificates.crt"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "mkimage:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("mkimage", flag.ContinueOnError)
	binary := fs.String("binary", "", "the static gateway binary (CGO_ENABLED=0)")
	cacerts := fs.String("cacerts", "/etc/ssl/certs/ca-certificates.crt", "CA bundle for outgoing TLS (tenant callbacks, rediss://, Postgres)")
	layoutDir := fs.String("layout", "", "write an OCI image layout to this directory")
	tarPath := fs.String("tarball", "", "also write a `docker load` tarball here")
	tag := fs.String("tag", "ghcr.io/postgate/postgate:dev", "the image reference recorded in the outputs")
	version := fs.String("version", "dev", "org.opencontainers.image.version")
	revision := fs.String("revision", "", "org.opencontainers.image.revision")
	arch := fs.String("arch", runtime.GOARCH, "the binary's architecture")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *binary == "" || *layoutDir == "" {
		return fmt.Errorf("-binary and -layout are required")
	}
	bin, err := os.ReadFile(*binary)
	if err != nil {
		return err
	}
	ca, err := os.ReadFile(*cacerts)
	if err != nil {
		return fmt.Errorf("CA bundle: %w (install Debian's ca-certificates)", err)
	}
	layerTar, err := rootfs(bin, ca)
	if err != nil {
		return err
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layerTar)), nil
	}, tarball.WithMediaType(types.OCILayer))
	if err != nil {
		return err
	}

	base := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	base = mutate.ConfigMediaType(base, types.OCIConfigJSON)
	img, err := mutate.AppendLayers(base, layer)
	if err != nil {
		return err
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		return err
	}
	cfg = cfg.DeepCopy()
	cfg.OS = "linux"
	cfg.Architecture = *arch
	cfg.Created = v1.Time{Time: time.Unix(0, 0).UTC()} // reproducible
	cfg.Config.Entrypoint = []string{binaryPath}
	cfg.Config.Cmd = []string{"serve"}
	cfg.Config.User = user
	cfg.Config.WorkingDir = "/"
	cfg.Config.ExposedPorts = map[string]struct{}{"8080/tcp": {}, "9090/tcp": {}}
	cfg.Config.Labels = map[string]string{
		"org.opencontainers.image.title":   "postgate",
		"org.opencontainers.image.source":  "https://github.com/postgate/postgate",
		"org.opencontainers.image.version": *version,
	}
	if *revision != "" {
		cfg.Config.Labels["org.opencontainers.image.revision"] = *revision
	}
	if img, err = mutate.ConfigFile(img, cfg); err != nil {
		return err
	}

	ref, err := name.ParseReference(*tag)
	if err != nil {
		return err
	}
	if err := os.RemoveAll(*layoutDir); err != nil {
		return err
	}
	p, err := layout.Write(*layoutDir, empty.Index)
	if err != nil {
		return err
	}
	if err := p.AppendImage(img, layout.WithAnnotations(map[string]string{
		"org.opencontainers.image.ref.name": ref.Name(),
	})); err != nil {
		return err
	}
	if *tarPath != "" {
		if err := tarball.WriteToFile(*tarPath, ref, img); err != nil {
			return err
		}
	}
	digest, err := img.Digest()
	if err != nil {
		return err
	}
	fmt.Printf("%s@%s\n", ref.Name(), digest)
	return nil
}

// rootfs is the image's only layer. Owned by root and read-only for the
// gateway user; nothing is writable (the chart mounts the root filesystem
// read-only anyway).
func rootfs(bin, ca []byte) ([]byte, error) {
	epoch := time.Unix(0, 0)
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	dir := func(path string) error {
		return tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: path, Mode: 0o755, ModTime: epoch, Format: tar.FormatPAX})
	}
	file := func(path string, mode int64, data []byte) error {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: path, Mode: mode, Size: int64(len(data)), ModTime: epoch, Format: tar.FormatPAX}); err != nil {
			return err
		}
		_, err := tw.Write(data)
		return err
	}
	steps := []func() error{
		func() error { return dir("etc/") },
		func() error {
			return file("etc/passwd", 0o644, []byte("root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n"))
		},
		func() error { return file("etc/group", 0o644, []byte("root:x:0:\nnonroot:x:65532:\n")) },
		func() error { return dir("etc/ssl/") },
		func() error { return dir("etc/ssl/certs/") },
		func() error { return file(caPath[1:], 0o644, ca) },
		func() error { return file(binaryPath[1:], 0o755, bin) },
	}
	for _, step := range steps {
		if err := step(); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
