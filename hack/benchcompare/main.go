// Command benchcompare drives berth and containerd (Debian's 1.6 and a
// containerd v2 built from its Go module) through the same CRI calls, one
// runtime at a time, each started fresh with a private root, the same
// runc, CNI network, cgroupfs and images served from a registry on
// 127.0.0.1. It prints one table with the ratio berth ÷ the faster
// containerd per row and writes the figures as JSON. `make bench-compare`
// runs it; see docs/performance.md.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"strings"
	"time"
)

func main() {
	n := flag.Int("n", 10, "iterations of each measured call")
	pods := flag.Int("pods", 100, "running pods for the density rows")
	binDir := flag.String("bin", "bin", "directory holding berthd, berth and berth-pause")
	containerd16 := flag.String("containerd-1.6", "/usr/bin/containerd", "Debian's containerd 1.6 (its shim is found on PATH)")
	containerd2 := flag.String("containerd-2-dir", "", "directory holding containerd v2 and its containerd-shim-runc-v2 (hack/benchcompare/build-containerd.sh)")
	only := flag.String("runtimes", "berth,containerd-1.6,containerd-2", "runtimes to measure, comma separated")
	jsonOut := flag.String("json", "bench-compare.json", "where to write the results")
	debug := flag.Bool("debug", false, "daemons log at debug (berthd logs each CRI request with its duration)")
	keep := flag.Bool("keep", false, "keep each runtime's directory (daemon.log) for inspection")
	runc := flag.String("runc", "/usr/sbin/runc", "the OCI runtime every runtime (and the floor) uses")
	reprint := flag.String("print", "", "only print the table of this JSON file from an earlier run")
	flag.Parse()
	log.SetFlags(log.Ltime)
	if *reprint != "" {
		var rep report
		data, err := os.ReadFile(*reprint)
		if err == nil {
			err = json.Unmarshal(data, &rep)
		}
		if err != nil {
			log.Fatal(err)
		}
		rep.print(os.Stdout)
		return
	}

	bin, err := filepath.Abs(*binDir)
	if err != nil {
		log.Fatal(err)
	}
	env := &environment{runc: *runc, cniBin: "/usr/lib/cni", subnet: "10.124.0.0/22", bridge: "bcmp0", binDir: bin, logDebg: *debug}
	log.Printf("building images and starting the registry on 127.0.0.1")
	if env.images, err = startRegistry(filepath.Join(bin, "berth-pause")); err != nil {
		log.Fatal(err)
	}
	kinds := map[string]runtimeKind{
		"berth":          berthKind(env),
		"containerd-1.6": containerdKind("containerd-1.6", *containerd16, "", false),
	}
	if *containerd2 != "" {
		kinds["containerd-2"] = containerdKind("containerd-2", filepath.Join(*containerd2, "containerd"), *containerd2, true)
	}
	columns := strings.Split(*only, ",")
	out := report{Machine: machine(), N: *n, Pods: *pods, Columns: columns, Results: map[string]map[string]float64{}, Notes: map[string]string{}}

	log.Printf("measuring the floor (bare runc, CNI without a runtime)")
	if out.Floor, err = floor(env, *n); err != nil {
		log.Printf("floor: %v", err)
	}
	for _, name := range columns {
		k, ok := kinds[name]
		if !ok {
			out.Notes[name] = "not available (containerd v2 needs -containerd-2-dir)"
			continue
		}
		log.Printf("measuring %s", name)
		res, err := measure(k, env, *n, *pods, *keep)
		out.Results[name] = res
		if err != nil {
			out.Notes[name] = err.Error()
			log.Printf("%s: %v (rows after the failure are n/a)", name, err)
		}
	}
	out.print(os.Stdout)
	data, _ := json.MarshalIndent(out, "", "  ")
	if err := os.WriteFile(*jsonOut, data, 0o644); err != nil {
		log.Fatal(err)
	}
	log.Printf("wrote %s", *jsonOut)
}

// measure starts one runtime, runs every group of rows against it and
// stops it. A group that fails leaves its rows n/a and the next one runs.
func measure(k runtimeKind, env *environment, n, pods int, keep bool) (map[string]float64, error) {
	r := &runner{env: env, n: n, pods: pods, res: map[string]float64{}}
	begin := time.Now()
	d, err := k.start(env)
	if d != nil {
		defer d.stop(env, keep)
	}
	if err != nil {
		return r.res, err
	}
	r.res["daemon start to ready"] = ms(time.Since(begin))
	r.d = d
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	// Neither image is timed here: containers need busybox and
	// containerd's pods need the pause image.
	for _, ref := range []string{env.images.busybox, env.images.pause} {
		if err := r.pull(ctx, ref); err != nil {
			return r.res, err
		}
	}
	var failures []string
	group := func(name string, f func() error) {
		if err := f(); err != nil {
			log.Printf("%s: %s: %v", k.name, name, err)
			failures = append(failures, name+": "+err.Error())
		}
		removeAllPods(ctx, d.rt)
	}
	var execCtr string
	for _, pk := range podKinds {
		group("pod cycles/"+pk.label, func() error { return r.podCycles(ctx, pk) })
		// The image group below execs in the last kind's container.
		group("container cycles/"+pk.label, func() error {
			_, _, ctr, err := r.containerCycles(ctx, pk)
			execCtr = ctr
			if pk != podKinds[len(podKinds)-1] {
				return err
			}
			if err == nil {
				err = r.imageRows(ctx, execCtr)
			}
			return err
		})
		group("pod-to-running/"+pk.label, func() error { return r.podsToRunning(ctx, pk) })
	}
	group("density", func() error { return r.density(ctx) })
	if len(failures) > 0 {
		return r.res, fmt.Errorf("%s", strings.Join(failures, "; "))
	}
	return r.res, nil
}

func machine() string {
	var parts []string
	if data, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(data), "\n") {
			if strings.HasPrefix(line, "model name") {
				parts = append(parts, strings.TrimSpace(strings.SplitN(line, ":", 2)[1]))
				break
			}
		}
	}
	cpus := 0
	if data, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		cpus = strings.Count(string(data), "processor\t:")
	}
	parts = append(parts, fmt.Sprintf("%d CPUs", cpus), fmt.Sprintf("%.0f GB RAM", statusMemGB()))
	if data, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		parts = append(parts, "Linux "+strings.TrimSpace(string(data)))
	}
	return strings.Join(parts, ", ")
}

func statusMemGB() float64 {
	data, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0
	}
	var kb float64
	fmt.Sscanf(string(data), "MemTotal: %f kB", &kb)
	return kb / 1024 / 1024
}
