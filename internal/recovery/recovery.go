package recovery

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"go.podman.io/storage"

	"github.com/berth-cri/berth/internal/container"
	"github.com/berth-cri/berth/internal/pod"
)

// Pods is what recovery needs from the pod manager.
type Pods interface {
	Recover(ctx context.Context, rebooted bool) pod.RecoverReport
	Sweep(ctx context.Context) pod.SweepReport
	IDs() map[string]bool
}

// Containers is what recovery needs from the container manager (which
// loaded and settled its records when it was built).
type Containers interface {
	Loaded() container.LoadReport
	Sweep(ctx context.Context, keep func(id string) bool) container.SweepReport
}

// Deps are recovery's collaborators.
type Deps struct {
	Start      *Start
	Pods       Pods
	Containers Containers
	Log        *slog.Logger
}

// Run settles pods (containers settled as they loaded) and, after an
// unclean shutdown or when loading discarded something, sweeps orphans.
// After a clean shutdown with nothing discarded there is nothing
// half-made to look for, so start-up stays proportional to the records.
func Run(ctx context.Context, d Deps) {
	t0 := time.Now()
	cr := d.Containers.Loaded()
	pr := d.Pods.Recover(ctx, d.Start.Rebooted)
	d.Log.Info("recovered records", "rebooted", d.Start.Rebooted, "unclean", d.Start.Unclean,
		"pods_ready", pr.Ready, "pods_notready", pr.NotReady, "pods_lost", pr.Lost, "pods_discarded", pr.Discarded,
		"containers_running", cr.Running, "containers_created", cr.Created, "containers_exited", cr.Exited,
		"containers_exited_while_down", cr.ExitedWhileDown, "containers_completed", cr.Completed,
		"containers_discarded", cr.Discarded, "torn_records", cr.FromPrev+pr.FromPrev)
	if d.Start.Unclean || d.Start.Rebooted || cr.Discarded > 0 || pr.Discarded > 0 {
		pods := d.Pods.IDs()
		cs := d.Containers.Sweep(ctx, func(id string) bool { return pods[id] })
		ps := d.Pods.Sweep(ctx)
		d.Log.Info("orphan sweep", "conmons", cs.Conmons, "bundles", cs.Bundles, "runtime_containers", cs.RuntimeStates,
			"storage_containers", cs.StorageContainers, "conmon_cgroups", cs.Cgroups,
			"ns_pins", ps.NSPins, "pod_run_dirs", ps.RunDirs, "cni_attachments", ps.CNI)
	}
	d.Log.Info("recovery done", "took", time.Since(t0))
}

// CheckStorage runs containers/storage's consistency check after an
// unclean shutdown and repairs what it finds, before anything uses the
// store. Layer contents are not hashed: that would read every image.
func CheckStorage(st storage.Store, log *slog.Logger) error {
	t0 := time.Now()
	age := 24 * time.Hour
	report, err := st.Check(&storage.CheckOptions{LayerUnreferencedMaximumAge: &age, LayerData: true, ImageData: true, ContainerData: true})
	if err != nil {
		return fmt.Errorf("check storage: %w", err)
	}
	n := len(report.Layers) + len(report.ROLayers) + len(report.Images) + len(report.ROImages) + len(report.Containers)
	if n == 0 {
		log.Info("storage checked after an unclean shutdown", "problems", 0, "took", time.Since(t0))
		return nil
	}
	errs := st.Repair(report, storage.RepairEverything())
	log.Warn("storage repaired after an unclean shutdown", "problems", n, "repair_errors", len(errs), "took", time.Since(t0))
	for _, e := range errs {
		log.Warn("storage repair", "error", e)
	}
	return nil
}
