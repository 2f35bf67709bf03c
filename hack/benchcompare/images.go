package main

import (
	"archive/tar"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/berth-cri/berth/internal/imagebuild"
)

// images are the references every runtime pulls from the bench registry.
type images struct {
	host      string   // 127.0.0.1:PORT
	busybox   string   // containers run this (pulled once, untimed)
	pause     string   // containerd's sandbox image
	small     string   // PullImage of a small image
	big       string   // ~50 MB in 5 layers
	different []string // 10 distinct images for concurrent pulls
}

// startRegistry serves an in-memory OCI registry on 127.0.0.1 (plain
// HTTP) and pushes the bench images into it: nothing is fetched from the
// network. The server lives until the process exits.
func startRegistry(pauseBinary string) (*images, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	srv := &http.Server{Handler: registry.New(registry.Logger(log.New(io.Discard, "", 0))), ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	host := ln.Addr().String()
	im := &images{host: host,
		busybox: host + "/bench/busybox:1",
		pause:   host + "/bench/pause:1",
		small:   host + "/bench/small:1",
		big:     host + "/bench/big:1",
	}
	busybox, err := imagebuild.Busybox(imagebuild.Spec{Cmd: []string{"sleep", "3600"}})
	if err != nil {
		return nil, err
	}
	pause, err := pauseImage(pauseBinary)
	if err != nil {
		return nil, err
	}
	// The small pull image differs from busybox by one tiny layer so that
	// pulling it never finds every layer present already.
	small, err := imagebuild.Busybox(imagebuild.Spec{ExtraLayers: []map[string]string{{"/small": "small\n"}}})
	if err != nil {
		return nil, err
	}
	big, err := imagebuild.Random(1, 4, 12<<20)
	if err != nil {
		return nil, err
	}
	push := map[string]v1.Image{im.busybox: busybox, im.pause: pause, im.small: small, im.big: big}
	for i := range 10 {
		img, err := imagebuild.Random(uint64(100+i), 1, 2<<20)
		if err != nil {
			return nil, err
		}
		ref := fmt.Sprintf("%s/bench/different-%d:1", host, i)
		im.different = append(im.different, ref)
		push[ref] = img
	}
	for ref, img := range push {
		r, err := name.ParseReference(ref, name.Insecure)
		if err != nil {
			return nil, err
		}
		if err := remote.Write(r, img); err != nil {
			return nil, fmt.Errorf("push %s: %w", ref, err)
		}
	}
	return im, nil
}

// pauseImage holds only the static berth-pause program as /pause.
func pauseImage(binary string) (v1.Image, error) {
	body, err := os.ReadFile(binary)
	if err != nil {
		return nil, fmt.Errorf("pause image: %w", err)
	}
	layer, err := imagebuild.RawLayer([]imagebuild.RawEntry{{
		Header: &tar.Header{Name: "pause", Mode: 0o755, Size: int64(len(body)), Typeflag: tar.TypeReg, ModTime: imagebuild.Epoch()},
		Body:   body,
	}})
	if err != nil {
		return nil, err
	}
	return imagebuild.Assemble([]v1.Layer{layer}, v1.Config{Entrypoint: []string{"/pause"}})
}
