package nri

import (
	"testing"

	"github.com/containerd/nri/pkg/api"
	rspec "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func TestFromSpec(t *testing.T) {
	oom := 100
	limit := int64(64 << 20)
	s := &rspec.Spec{
		Annotations: map[string]string{"a": "1"},
		Process: &rspec.Process{
			Args: []string{"sleep", "1"}, Env: []string{"A=1"}, OOMScoreAdj: &oom,
			Rlimits: []rspec.POSIXRlimit{{Type: "RLIMIT_NOFILE", Hard: 20, Soft: 10}},
			User:    rspec.User{UID: 7, GID: 8},
		},
		Mounts: []rspec.Mount{{Destination: "/etc/hosts", Source: "/x/hosts", Type: "bind"}},
		Linux: &rspec.Linux{
			CgroupsPath: "/berth/c",
			Namespaces:  []rspec.LinuxNamespace{{Type: "pid"}},
			Resources:   &rspec.LinuxResources{Memory: &rspec.LinuxMemory{Limit: &limit}},
			// No seccomp: the module's converter must not be handed nil.
		},
	}
	c := FromSpec(ContainerMeta{ID: "c1", PodID: "p1", Name: "n", State: api.ContainerState_CONTAINER_RUNNING, Pid: 42}, s)
	if c.GetId() != "c1" || c.GetPodSandboxId() != "p1" || c.GetPid() != 42 || c.GetAnnotations()["a"] != "1" ||
		len(c.GetArgs()) != 2 || c.GetEnv()[0] != "A=1" || c.GetMounts()[0].GetDestination() != "/etc/hosts" ||
		c.GetRlimits()[0].GetSoft() != 10 || c.GetUser().GetUid() != 7 ||
		c.GetLinux().GetOomScoreAdj().GetValue() != 100 || c.GetLinux().GetCgroupsPath() != "/berth/c" ||
		c.GetLinux().GetResources().GetMemory().GetLimit().GetValue() != limit || c.GetLinux().GetSeccompPolicy() != nil {
		t.Fatalf("FromSpec: %v", c)
	}
	if c := FromSpec(ContainerMeta{ID: "bare"}, nil); c.GetId() != "bare" {
		t.Fatalf("FromSpec without a spec: %v", c)
	}
}

func TestResourcesRoundTrip(t *testing.T) {
	in := &runtimeapi.LinuxContainerResources{
		CpuShares: 512, CpuQuota: 50000, CpuPeriod: 100000, MemoryLimitInBytes: 1 << 30, MemorySwapLimitInBytes: 2 << 30,
		CpusetCpus: "0-1", CpusetMems: "0", Unified: map[string]string{"memory.high": "max"},
		HugepageLimits: []*runtimeapi.HugepageLimit{{PageSize: "2MB", Limit: 4 << 20}},
	}
	if out := toCRIResources(FromCRIResources(in)); !proto.Equal(in, out) {
		t.Fatalf("round trip:\n in %v\nout %v", in, out)
	}
	// An update sets only what it names.
	upd := &api.LinuxResources{Cpu: &api.LinuxCPU{Cpus: "2"}, Memory: &api.LinuxMemory{Limit: api.Int64(int64(2 << 30))}}
	got := mergeCRIResources(in, upd)
	if got.GetCpusetCpus() != "2" || got.GetMemoryLimitInBytes() != 2<<30 || got.GetCpuShares() != 512 || in.GetCpusetCpus() != "0-1" {
		t.Fatalf("merge: %v (base now %v)", got, in)
	}
	if FromCRIResources(nil) != nil || toCRIResources(nil) != nil {
		t.Fatal("nil resources should stay nil")
	}
}
