// Package image tests the container image `make image` builds: read from
// its OCI layout, offline.
package image

import (
	"archive/tar"
	"bytes"
	"debug/elf"
	"errors"
	"flag"
	"io"
	"strconv"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

var (
	layoutDir = flag.String("layout", "", "the OCI image layout written by `make image`")
	tarPath   = flag.String("tarball", "", "the docker-load tarball written by `make image` (optional)")
)

func TestImage(t *testing.T) {
	if *layoutDir == "" {
		t.Skip("no -layout: run `make image`")
	}
	idx, err := layout.ImageIndexFromPath(*layoutDir)
	if err != nil {
		t.Fatal(err)
	}
	manifest, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if len(manifest.Manifests) != 1 {
		t.Fatalf("layout holds %d images, want 1", len(manifest.Manifests))
	}
	img, err := idx.Image(manifest.Manifests[0].Digest)
	if err != nil {
		t.Fatal(err)
	}
	checkImage(t, img)

	if *tarPath != "" {
		t.Run("tarball", func(t *testing.T) {
			timg, err := tarball.ImageFromPath(*tarPath, nil)
			if err != nil {
				t.Fatal(err)
			}
			// The docker tarball has its own manifest format; the config
			// (and so the image ID) must be the same.
			want, _ := img.ConfigName()
			if got, err := timg.ConfigName(); err != nil || got != want {
				t.Errorf("tarball image ID %v (%v), want the layout's %v", got, err, want)
			}
			checkImage(t, timg)
		})
	}
}

func checkImage(t *testing.T, img v1.Image) {
	t.Helper()
	cfg, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	c := cfg.Config
	if len(c.Entrypoint) != 1 || c.Entrypoint[0] != "/gateway" {
		t.Errorf("Entrypoint = %q, want [/gateway]", c.Entrypoint)
	}
	if uid, gid, ok := strings.Cut(c.User, ":"); !ok || !nonRootID(uid) || !nonRootID(gid) {
		t.Errorf("User = %q, want a numeric non-root uid:gid (Kubernetes' runAsNonRoot needs numbers)", c.User)
	}
	if cfg.OS != "linux" || cfg.Architecture == "" {
		t.Errorf("platform %s/%s", cfg.OS, cfg.Architecture)
	}

	// The filesystem: the binary, executable and statically linked, a CA
	// bundle, and nothing else that could run (no shell).
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	if len(layers) != 1 {
		t.Errorf("%d layers, want 1 on an empty base", len(layers))
	}
	files := map[string]*tar.Header{}
	var binary []byte
	for _, l := range layers {
		rc, err := l.Uncompressed()
		if err != nil {
			t.Fatal(err)
		}
		tr := tar.NewReader(rc)
		for {
			h, err := tr.Next()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			path := "/" + strings.TrimPrefix(h.Name, "/")
			files[path] = h
			if path == "/gateway" {
				if binary, err = io.ReadAll(tr); err != nil {
					t.Fatal(err)
				}
			}
		}
		rc.Close()
	}
	h := files["/gateway"]
	if h == nil {
		t.Fatal("/gateway is not in the image")
	}
	if h.Mode&0o111 == 0 || h.Mode&0o022 != 0 {
		t.Errorf("/gateway mode %o, want executable and not writable by group or others", h.Mode)
	}
	if h.Uid != 0 {
		t.Errorf("/gateway is owned by uid %d: the user it runs as could replace it", h.Uid)
	}
	f, err := elf.NewFile(bytes.NewReader(binary))
	if err != nil {
		t.Fatalf("/gateway is not an ELF binary: %v", err)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP || p.Type == elf.PT_DYNAMIC {
			t.Errorf("/gateway is dynamically linked (build with CGO_ENABLED=0): an empty base has no libc")
			break
		}
	}
	if files["/etc/ssl/certs/ca-certificates.crt"] == nil {
		t.Error("no CA bundle: tenant callbacks over https would fail")
	}
	for _, sh := range []string{"/bin/sh", "/bin/bash", "/busybox"} {
		if files[sh] != nil {
			t.Errorf("%s is in the image", sh)
		}
	}
}

func nonRootID(s string) bool {
	n, err := strconv.Atoi(s)
	return err == nil && n > 0
}
