package cri

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/config"
	"github.com/berth-cri/berth/internal/errdefs"
	"github.com/berth-cri/berth/internal/metrics"
	"github.com/berth-cri/berth/internal/stats"
)

// noObjects is a pod and container source with nothing in it.
type noObjects struct{}

func (noObjects) StatsContainers() []stats.ContainerTarget { return nil }
func (noObjects) StatsPods() []stats.PodTarget             { return nil }
func (noObjects) StatsContainer(id string) (stats.ContainerTarget, error) {
	return stats.ContainerTarget{}, fmt.Errorf("container %q: %w", id, errdefs.ErrNotFound)
}
func (noObjects) StatsPod(id string) (stats.PodTarget, error) {
	return stats.PodTarget{}, fmt.Errorf("pod sandbox %q: %w", id, errdefs.ErrNotFound)
}

func TestStatsRPCsAndOperationMetrics(t *testing.T) {
	cfg := config.Default()
	cfgf := func() *config.Config { return cfg }
	col := stats.New(stats.Options{Config: cfgf, Log: slog.New(slog.DiscardHandler), Pods: noObjects{}, Containers: noObjects{}})
	t.Cleanup(func() { col.Close() })
	m := metrics.New()
	sock := filepath.Join(t.TempDir(), "berth.sock")
	s := New(Deps{Config: cfgf, Log: slog.New(slog.DiscardHandler), Version: "test", Stats: col, Metrics: m})
	if err := s.Listen(sock); err != nil {
		t.Fatal(err)
	}
	go s.Serve()
	t.Cleanup(func() { s.Stop(time.Second) })
	rt := runtimeapi.NewRuntimeServiceClient(dial(t, sock))
	ctx := context.Background()

	_, err := rt.ContainerStats(ctx, &runtimeapi.ContainerStatsRequest{ContainerId: "nope"})
	if status.Code(err) != codes.NotFound {
		t.Fatalf("unknown container: %v", err)
	}
	_, err = rt.PodSandboxStats(ctx, &runtimeapi.PodSandboxStatsRequest{PodSandboxId: "nope"})
	if status.Code(err) != codes.NotFound {
		t.Fatalf("unknown pod: %v", err)
	}
	_, err = rt.ContainerStats(ctx, &runtimeapi.ContainerStatsRequest{})
	if status.Code(err) != codes.InvalidArgument {
		t.Fatalf("no id: %v", err)
	}
	if l, err := rt.ListPodSandboxStats(ctx, &runtimeapi.ListPodSandboxStatsRequest{}); err != nil || len(l.GetStats()) != 0 {
		t.Fatalf("ListPodSandboxStats: %v %v", l, err)
	}
	if d, err := rt.ListMetricDescriptors(ctx, &runtimeapi.ListMetricDescriptorsRequest{}); err != nil || len(d.GetDescriptors()) == 0 {
		t.Fatalf("ListMetricDescriptors: %v %v", d, err)
	}
	if _, err := rt.ListPodSandboxMetrics(ctx, &runtimeapi.ListPodSandboxMetricsRequest{}); err != nil {
		t.Fatal(err)
	}

	fams, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, f := range fams {
		for _, mm := range f.GetMetric() {
			for _, l := range mm.GetLabel() {
				if l.GetName() == "operation" && mm.Counter != nil {
					got[f.GetName()+"/"+l.GetValue()] = mm.GetCounter().GetValue()
				}
			}
		}
	}
	for k, want := range map[string]float64{
		"berth_operations_total/ContainerStats":         2,
		"berth_operations_errors_total/ContainerStats":  2,
		"berth_operations_total/ListPodSandboxStats":    1,
		"berth_operations_total/ListMetricDescriptors":  1,
		"berth_operations_errors_total/PodSandboxStats": 1,
	} {
		if got[k] != want {
			t.Errorf("%s = %v, want %v", k, got[k], want)
		}
	}
	if _, ok := got["berth_operations_errors_total/ListPodSandboxStats"]; ok {
		t.Error("a successful call counted as an error")
	}
}
