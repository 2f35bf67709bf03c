package cgroups

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
)

// Limits are the CPU and memory limits berth writes to a pod cgroup it
// made itself (the kubelet writes those of the pod cgroups it makes).
// Zero leaves a setting as it is; a CPUQuota below zero means no quota.
type Limits struct {
	CPUShares uint64
	CPUQuota  int64
	CPUPeriod uint64
	Memory    int64
}

// SetLimits writes l to the cgroup rel (a cgroupfs path below the
// hierarchy roots): cpu.shares, cpu.cfs_period_us, cpu.cfs_quota_us and
// memory.limit_in_bytes on v1; cpu.weight, cpu.max and memory.max on v2.
func SetLimits(rel string, l Limits) error {
	if IsUnified(Root) {
		return setLimitsV2(filepath.Join(Root, rel), l)
	}
	mounts, err := Mounts()
	if err != nil {
		return err
	}
	var writes []fileValue
	if cpu := ControllerDir(mounts, "cpu"); cpu != "" {
		dir := filepath.Join(cpu, rel)
		if l.CPUShares > 0 {
			writes = append(writes, fileValue{filepath.Join(dir, "cpu.shares"), strconv.FormatUint(l.CPUShares, 10)})
		}
		if l.CPUPeriod > 0 {
			writes = append(writes, fileValue{filepath.Join(dir, "cpu.cfs_period_us"), strconv.FormatUint(l.CPUPeriod, 10)})
		}
		if l.CPUQuota != 0 {
			writes = append(writes, fileValue{filepath.Join(dir, "cpu.cfs_quota_us"), strconv.FormatInt(max(l.CPUQuota, -1), 10)})
		}
	}
	if mem := ControllerDir(mounts, "memory"); mem != "" && l.Memory > 0 {
		writes = append(writes, fileValue{filepath.Join(mem, rel, "memory.limit_in_bytes"), strconv.FormatInt(l.Memory, 10)})
	}
	return writeAll(writes)
}

func setLimitsV2(dir string, l Limits) error {
	var writes []fileValue
	if l.CPUShares > 0 {
		writes = append(writes, fileValue{filepath.Join(dir, "cpu.weight"), strconv.FormatUint(SharesToWeight(l.CPUShares), 10)})
	}
	if l.CPUQuota != 0 || l.CPUPeriod > 0 {
		quota := "max"
		if l.CPUQuota > 0 {
			quota = strconv.FormatInt(l.CPUQuota, 10)
		}
		v := quota
		if l.CPUPeriod > 0 {
			v += " " + strconv.FormatUint(l.CPUPeriod, 10)
		}
		writes = append(writes, fileValue{filepath.Join(dir, "cpu.max"), v})
	}
	if l.Memory > 0 {
		writes = append(writes, fileValue{filepath.Join(dir, "memory.max"), strconv.FormatInt(l.Memory, 10)})
	}
	return writeAll(writes)
}

// SharesToWeight maps cgroup v1 cpu.shares [2, 262144] onto cgroup v2
// cpu.weight [1, 10000], the conversion runc and the kubelet use.
func SharesToWeight(shares uint64) uint64 {
	if shares == 0 {
		return 0
	}
	shares = min(max(shares, 2), 262144)
	return 1 + ((shares-2)*9999)/262142
}

type fileValue struct{ path, value string }

func writeAll(writes []fileValue) error {
	for _, w := range writes {
		if err := os.WriteFile(w.path, []byte(w.value), 0); err != nil {
			return fmt.Errorf("set cgroup limit %s to %s: %w", w.path, w.value, err)
		}
	}
	return nil
}
