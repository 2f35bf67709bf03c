// Command mkimage writes a small busybox image, built offline from the
// host's busybox-static, as a docker-archive: the demo and the benchmark
// import it with `berth image import`.
package main

import (
	"flag"
	"fmt"
	"os"
	"strings"

	"github.com/berth-cri/berth/internal/imagebuild"
)

func main() {
	out := flag.String("o", "busybox.tar", "output docker-archive")
	ref := flag.String("name", "localhost/busybox:latest", "tag recorded in the archive")
	cmd := flag.String("cmd", "", "image command, space separated (default /bin/sh)")
	flag.Parse()
	spec := imagebuild.Spec{}
	if *cmd != "" {
		spec.Cmd = strings.Fields(*cmd)
	}
	img, err := imagebuild.Busybox(spec)
	if err == nil {
		err = imagebuild.SaveDockerArchive(img, *out, *ref)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "mkimage:", err)
		os.Exit(1)
	}
}
