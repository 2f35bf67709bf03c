package main

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func (r *runner) pull(ctx context.Context, ref string) error {
	_, err := r.d.img.PullImage(ctx, &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: ref}})
	if err != nil {
		return fmt.Errorf("pull %s: %w", ref, err)
	}
	return nil
}

func (r *runner) removeImage(ctx context.Context, ref string) error {
	_, err := r.d.img.RemoveImage(ctx, &runtimeapi.RemoveImageRequest{Image: &runtimeapi.ImageSpec{Image: ref}})
	return err
}

// imageRows measures pulls (each of an image absent from the runtime),
// RemoveImage, ImageStatus, ListImages and ExecSync.
func (r *runner) imageRows(ctx context.Context, execCtr string) error {
	s := stopwatch{}
	im := r.env.images
	for range r.n {
		if err := s.time("PullImage small", func() error { return r.pull(ctx, im.small) }); err != nil {
			return err
		}
		if err := s.time("RemoveImage", func() error { return r.removeImage(ctx, im.small) }); err != nil {
			return err
		}
	}
	reps := max(2, r.n/4)
	for range reps {
		if err := s.time("PullImage 50 MB 5 layers", func() error { return r.pull(ctx, im.big) }); err != nil {
			return err
		}
		if err := r.removeImage(ctx, im.big); err != nil {
			return err
		}
	}
	for range reps {
		same := make([]string, len(im.different))
		for i := range same {
			same[i] = im.big
		}
		if err := s.time("10 concurrent pulls, same 50 MB image", func() error { return r.pullAll(ctx, same) }); err != nil {
			return err
		}
		if err := r.removeImage(ctx, im.big); err != nil {
			return err
		}
		if err := s.time("10 concurrent pulls, 10 different images", func() error { return r.pullAll(ctx, im.different) }); err != nil {
			return err
		}
		for _, ref := range im.different {
			if err := r.removeImage(ctx, ref); err != nil {
				return err
			}
		}
	}
	for range r.n {
		if err := s.time("ImageStatus", func() error {
			_, err := r.d.img.ImageStatus(ctx, &runtimeapi.ImageStatusRequest{Image: &runtimeapi.ImageSpec{Image: im.busybox}})
			return err
		}); err != nil {
			return err
		}
		if err := s.time("ListImages", func() error {
			_, err := r.d.img.ListImages(ctx, &runtimeapi.ListImagesRequest{})
			return err
		}); err != nil {
			return err
		}
		if err := s.time("ExecSync true", func() error {
			resp, err := r.d.rt.ExecSync(ctx, &runtimeapi.ExecSyncRequest{ContainerId: execCtr, Cmd: []string{"true"}, Timeout: 10})
			if err == nil && resp.ExitCode != 0 {
				err = fmt.Errorf("exit code %d: %s", resp.ExitCode, resp.Stderr)
			}
			return err
		}); err != nil {
			return err
		}
	}
	r.record(s)
	return nil
}

func (r *runner) pullAll(ctx context.Context, refs []string) error {
	errs := make([]error, len(refs))
	var wg sync.WaitGroup
	for i, ref := range refs {
		wg.Go(func() { errs[i] = r.pull(ctx, ref) })
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// density starts running pods (one container each) up to 10 and then up
// to r.pods, and at each level measures the List calls and memory.
func (r *runner) density(ctx context.Context) error {
	running := 0
	for _, level := range []int{10, r.pods} {
		for ; running < level; running++ {
			if _, err := r.runningPod(ctx, r.name("density"), runtimeapi.NamespaceMode_CONTAINER); err != nil {
				return fmt.Errorf("pod %d of %d: %w", running+1, level, err)
			}
		}
		// Let the new containers' helpers settle before reading memory.
		time.Sleep(2 * time.Second)
		suffix := fmt.Sprintf("/%d pods", level)
		s := stopwatch{}
		lists := map[string]func() error{
			"ListPodSandbox": func() error {
				_, err := r.d.rt.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{})
				return err
			},
			"ListContainers": func() error {
				_, err := r.d.rt.ListContainers(ctx, &runtimeapi.ListContainersRequest{})
				return err
			},
			"ListContainerStats": func() error {
				_, err := r.d.rt.ListContainerStats(ctx, &runtimeapi.ListContainerStatsRequest{})
				return err
			},
			"ListPodSandboxStats": func() error {
				_, err := r.d.rt.ListPodSandboxStats(ctx, &runtimeapi.ListPodSandboxStatsRequest{})
				return err
			},
		}
		for range max(r.n, 20) {
			for row, f := range lists {
				if err := s.time(row, f); err != nil {
					return err
				}
			}
		}
		for row, samples := range s {
			r.res[row+" p50"+suffix] = ms(quantile(samples, 0.5))
			r.res[row+" p99"+suffix] = ms(quantile(samples, 0.99))
		}
		r.res["daemon RSS MB"+suffix] = statusMB(r.d.cmd.Process.Pid, "VmRSS")
		total := 0.0
		for _, pid := range helperPIDs(r.d.kind.helper, r.d.dir) {
			total += statusMB(pid, "VmRSS")
		}
		r.res["total helper RSS MB"+suffix] = total
	}
	r.res["daemon peak RSS MB (VmHWM, whole run)"] = statusMB(r.d.cmd.Process.Pid, "VmHWM")
	return nil
}

// statusMB reads a kB field of /proc/PID/status in MB.
func statusMB(pid int, field string) float64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == field+":" {
			kb, _ := strconv.Atoi(f[1])
			return float64(kb) / 1024
		}
	}
	return 0
}

// cpuSeconds is utime+stime of pid (fields 14 and 15 of /proc/PID/stat,
// counted after the parenthesised comm, which may hold spaces).
func cpuSeconds(pid int) float64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(data)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 13 {
		return 0
	}
	utime, _ := strconv.ParseFloat(f[11], 64)
	stime, _ := strconv.ParseFloat(f[12], 64)
	return (utime + stime) / 100 // USER_HZ is 100 on Linux
}
