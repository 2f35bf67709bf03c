package main

import (
	"archive/tar"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/containernetworking/cni/libcni"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/opencontainers/runtime-spec/specs-go"

	"github.com/berth-cri/berth/internal/imagebuild"
)

// floor measures what no runtime can beat on this machine: bare runc
// create/start/kill/delete of a busybox bundle, and CNI ADD/DEL of the
// bench network without a runtime.
func floor(env *environment, n int) (map[string]float64, error) {
	dir, err := os.MkdirTemp("/tmp", "benchcompare-floor.")
	if err != nil {
		return nil, err
	}
	defer func() {
		exec.Command("ip", "link", "del", env.bridge).Run()
		os.RemoveAll(dir)
	}()
	res := map[string]float64{}
	runc, err := runcFloor(env, dir, n)
	if err != nil {
		return nil, fmt.Errorf("runc floor: %w", err)
	}
	res["floor: runc create+start+kill+delete"] = runc
	cni, err := cniFloor(env, dir, n)
	if err != nil {
		return nil, fmt.Errorf("CNI floor: %w", err)
	}
	res["floor: CNI ADD+DEL"] = cni
	return res, nil
}

func runcFloor(env *environment, dir string, n int) (float64, error) {
	bundle := filepath.Join(dir, "bundle")
	img, err := imagebuild.Busybox(imagebuild.Spec{})
	if err != nil {
		return 0, err
	}
	if err := extract(img, filepath.Join(bundle, "rootfs")); err != nil {
		return 0, err
	}
	if out, err := exec.Command(env.runc, "spec", "--bundle", bundle).CombinedOutput(); err != nil {
		return 0, fmt.Errorf("runc spec: %v: %s", err, out)
	}
	var spec specs.Spec
	data, err := os.ReadFile(filepath.Join(bundle, "config.json"))
	if err != nil {
		return 0, err
	}
	if err := json.Unmarshal(data, &spec); err != nil {
		return 0, err
	}
	spec.Process.Terminal = false
	spec.Process.Args = []string{"/bin/sleep", "3600"}
	root := filepath.Join(dir, "runc")
	var samples []time.Duration
	for i := range n {
		id := fmt.Sprintf("benchcompare-floor-%d", i)
		spec.Linux.CgroupsPath = "/benchcompare/" + id
		data, _ := json.Marshal(&spec)
		if err := os.WriteFile(filepath.Join(bundle, "config.json"), data, 0o644); err != nil {
			return 0, err
		}
		runc := func(args ...string) error {
			// Output goes to a file, not a pipe: the container inherits
			// create's stdio and would hold a pipe open for its lifetime.
			out, err := os.Create(filepath.Join(dir, "runc.out"))
			if err != nil {
				return err
			}
			defer out.Close()
			cmd := exec.Command(env.runc, append([]string{"--root", root}, args...)...)
			cmd.Stdout, cmd.Stderr = out, out
			if err := cmd.Run(); err != nil {
				msg, _ := os.ReadFile(out.Name())
				return fmt.Errorf("runc %v: %v: %s", args, err, msg)
			}
			return nil
		}
		start := time.Now()
		err := runc("create", "--bundle", bundle, id)
		if err == nil {
			err = runc("start", id)
		}
		if err == nil {
			err = runc("kill", id, "KILL")
		}
		if err == nil {
			// delete refuses a container whose init has not exited yet.
			for try := 0; ; try++ {
				if err = runc("delete", id); err == nil || try == 1000 {
					break
				}
				time.Sleep(time.Millisecond)
			}
		}
		samples = append(samples, time.Since(start))
		if err != nil {
			runc("delete", "--force", id)
			return 0, err
		}
	}
	return ms(quantile(samples, 0.5)), nil
}

// extract unpacks img's flattened filesystem into dst.
func extract(img v1.Image, dst string) error {
	rc := mutate.Extract(img)
	defer rc.Close()
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		p := filepath.Join(dst, filepath.Clean("/"+h.Name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		switch h.Typeflag {
		case tar.TypeDir:
			err = os.MkdirAll(p, os.FileMode(h.Mode)&os.ModePerm)
		case tar.TypeSymlink:
			err = os.Symlink(h.Linkname, p)
		case tar.TypeLink:
			err = os.Link(filepath.Join(dst, filepath.Clean("/"+h.Linkname)), p)
		case tar.TypeReg:
			var f *os.File
			if f, err = os.OpenFile(p, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, os.FileMode(h.Mode)&os.ModePerm); err == nil {
				_, err = io.Copy(f, tr)
				f.Close()
			}
		}
		if err != nil {
			return fmt.Errorf("extract %s: %w", h.Name, err)
		}
	}
}

func cniFloor(env *environment, dir string, n int) (float64, error) {
	list, err := libcni.ConfListFromBytes([]byte(env.conflist(filepath.Join(dir, "ipam"))))
	if err != nil {
		return 0, err
	}
	cni := libcni.NewCNIConfigWithCacheDir([]string{env.cniBin}, filepath.Join(dir, "cni-cache"), nil)
	ctx := context.Background()
	var samples []time.Duration
	for i := range n {
		ns := fmt.Sprintf("benchcompare-floor-%d", i)
		if out, err := exec.Command("ip", "netns", "add", ns).CombinedOutput(); err != nil {
			return 0, fmt.Errorf("ip netns add: %v: %s", err, out)
		}
		rt := &libcni.RuntimeConf{ContainerID: ns, NetNS: "/var/run/netns/" + ns, IfName: "eth0"}
		start := time.Now()
		_, err := cni.AddNetworkList(ctx, list, rt)
		if err == nil {
			err = cni.DelNetworkList(ctx, list, rt)
		}
		samples = append(samples, time.Since(start))
		exec.Command("ip", "netns", "del", ns).Run()
		if err != nil {
			return 0, err
		}
	}
	return ms(quantile(samples, 0.5)), nil
}
