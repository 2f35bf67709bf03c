package e2e

import (
	"context"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// acceptable are the codes a CRI call may fail with on a request that
// is wrong: Unknown and Internal mean berthd did not understand its own
// failure (or recovered a panic), Unavailable that it went away.
var acceptable = map[codes.Code]bool{
	codes.OK: true, codes.InvalidArgument: true, codes.NotFound: true, codes.FailedPrecondition: true,
	codes.Unimplemented: true, codes.AlreadyExists: true, codes.OutOfRange: true,
}

// fillRequest sets every message field of m down to depth with an empty
// message, every string and bytes field to str, and every map<string,
// string> to entries keys of str-sized values.
func fillRequest(m protoreflect.Message, depth int, str string, entries int) {
	fields := m.Descriptor().Fields()
	for i := 0; i < fields.Len(); i++ {
		fd := fields.Get(i)
		switch {
		case fd.IsMap():
			if fd.MapKey().Kind() != protoreflect.StringKind || fd.MapValue().Kind() != protoreflect.StringKind || entries == 0 {
				continue
			}
			mp := m.Mutable(fd).Map()
			for j := 0; j < entries; j++ {
				mp.Set(protoreflect.ValueOfString(fmt.Sprintf("key-%d", j)).MapKey(), protoreflect.ValueOfString(str))
			}
		case fd.IsList():
			if fd.Kind() == protoreflect.StringKind && str != "" {
				m.Mutable(fd).List().Append(protoreflect.ValueOfString(str))
			}
		case fd.Kind() == protoreflect.MessageKind:
			if depth > 0 {
				fillRequest(m.Mutable(fd).Message(), depth-1, str, entries)
			}
		case fd.Kind() == protoreflect.StringKind && str != "":
			m.Set(fd, protoreflect.ValueOfString(str))
		case fd.Kind() == protoreflect.BytesKind && str != "":
			m.Set(fd, protoreflect.ValueOfBytes([]byte(str)))
		}
	}
}

// callRPC calls method name of client with req (a pointer to the
// method's request type, made by mk), draining a server stream; it
// returns the first error.
func callRPC(ctx context.Context, client any, name string, fill func(proto.Message)) error {
	mv := reflect.ValueOf(client).MethodByName(name)
	req := reflect.New(mv.Type().In(1).Elem())
	fill(req.Interface().(proto.Message))
	out := mv.Call([]reflect.Value{reflect.ValueOf(ctx), req})
	if err, _ := out[1].Interface().(error); err != nil {
		return err
	}
	recv := out[0].MethodByName("Recv")
	if !recv.IsValid() {
		return nil
	}
	for i := 0; i < 100; i++ {
		r := recv.Call(nil)
		if err, _ := r[1].Interface().(error); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
	}
	return nil
}

// TestCRIRobustness calls every CRI RPC with empty requests, requests
// whose nested messages are empty (nil fields below), requests naming
// objects that do not exist, and oversized requests. Each answers with
// a proper gRPC code and a message; berthd recovers no panic and keeps
// serving.
func TestCRIRobustness(t *testing.T) {
	e := startCtrEnv(t)
	clients := map[string]any{"runtime": e.d.Runtime, "image": e.d.Images}
	types := map[string]reflect.Type{
		"runtime": reflect.TypeOf((*runtimeapi.RuntimeServiceClient)(nil)).Elem(),
		"image":   reflect.TypeOf((*runtimeapi.ImageServiceClient)(nil)).Elem(),
	}
	big := strings.Repeat("a", 300<<10)
	variants := []struct {
		name string
		fill func(proto.Message)
	}{
		{"empty", func(proto.Message) {}},
		{"nil fields", func(m proto.Message) { fillRequest(m.ProtoReflect(), 1, "", 0) }},
		{"unknown ids", func(m proto.Message) { fillRequest(m.ProtoReflect(), 3, "nonexistent-0000", 1) }},
		{"oversized", func(m proto.Message) { fillRequest(m.ProtoReflect(), 2, big, 3) }},
	}
	calls := 0
	codesOf := map[string][]string{}
	var names []string
	for _, svc := range []string{"runtime", "image"} {
		typ := types[svc]
		for i := 0; i < typ.NumMethod(); i++ {
			name := typ.Method(i).Name
			names = append(names, name)
			for _, v := range variants {
				t.Run(name+"/"+v.name, func(t *testing.T) {
					ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
					defer cancel()
					if name == "GetContainerEvents" {
						// An endless stream: it must be open, then end at its deadline.
						ctx, cancel = context.WithTimeout(ctx, 500*time.Millisecond)
						defer cancel()
					}
					err := callRPC(ctx, clients[svc], name, v.fill)
					calls++
					code := status.Code(err)
					codesOf[name] = append(codesOf[name], v.name+"="+code.String())
					if name == "GetContainerEvents" && code == codes.DeadlineExceeded {
						return
					}
					if !acceptable[code] {
						t.Errorf("%s (%s): %v", name, v.name, err)
					}
					if err != nil && strings.TrimSpace(status.Convert(err).Message()) == "" {
						t.Errorf("%s (%s): code %v without a message", name, v.name, code)
					}
				})
			}
		}
	}
	t.Logf("%d calls", calls)
	for _, n := range names {
		t.Logf("%s: %s", n, strings.Join(codesOf[n], " "))
	}
	if _, err := e.d.Runtime.Version(ctxT(t, 10*time.Second), &runtimeapi.VersionRequest{}); err != nil {
		t.Fatalf("berthd stopped serving: %v", err)
	}
	assertNoPanic(t, e.d)
}

// TestCRIWrongState calls RPCs on objects in the wrong state: each gets
// the code the kubelet expects, and berthd keeps serving.
func TestCRIWrongState(t *testing.T) {
	e := startCtrEnv(t)
	rt := e.d.Runtime
	ctx := func() context.Context { return ctxT(t, time.Minute) }
	running := e.run(t, e.config("running", "sleep", "1000"))
	created := e.mustCreate(t, e.config("created", "sleep", "1000"))
	exited := e.run(t, e.config("exited", "true"))
	e.waitExited(t, exited, time.Minute)
	removed := e.mustCreate(t, e.config("removed", "true"))
	e.remove(t, removed)

	check := func(what string, err error, want ...codes.Code) {
		t.Helper()
		for _, c := range want {
			if status.Code(err) == c {
				if err != nil && status.Convert(err).Message() == "" {
					t.Errorf("%s: %v without a message", what, c)
				}
				return
			}
		}
		t.Errorf("%s: got %v, want one of %v", what, err, want)
	}
	_, err := rt.StartContainer(ctx(), &runtimeapi.StartContainerRequest{ContainerId: removed})
	check("start a removed container", err, codes.NotFound)
	_, err = rt.StartContainer(ctx(), &runtimeapi.StartContainerRequest{ContainerId: running})
	check("start a running container", err, codes.FailedPrecondition)
	_, err = rt.StartContainer(ctx(), &runtimeapi.StartContainerRequest{ContainerId: exited})
	check("start an exited container", err, codes.FailedPrecondition)
	_, err = rt.ExecSync(ctx(), &runtimeapi.ExecSyncRequest{ContainerId: exited, Cmd: []string{"true"}})
	check("exec into an exited container", err, codes.FailedPrecondition)
	_, err = rt.ExecSync(ctx(), &runtimeapi.ExecSyncRequest{ContainerId: created, Cmd: []string{"true"}})
	check("exec into a created container", err, codes.FailedPrecondition)
	_, err = rt.Exec(ctx(), &runtimeapi.ExecRequest{ContainerId: exited, Cmd: []string{"true"}, Stdout: true})
	check("streaming exec into an exited container", err, codes.FailedPrecondition)
	_, err = rt.Attach(ctx(), &runtimeapi.AttachRequest{ContainerId: removed, Stdout: true})
	check("attach to a removed container", err, codes.NotFound)
	_, err = rt.ReopenContainerLog(ctx(), &runtimeapi.ReopenContainerLogRequest{ContainerId: exited})
	check("reopen the log of an exited container", err, codes.FailedPrecondition)
	_, err = rt.StopContainer(ctx(), &runtimeapi.StopContainerRequest{ContainerId: removed})
	check("stop a removed container", err, codes.NotFound, codes.OK)
	_, err = rt.RemoveContainer(ctx(), &runtimeapi.RemoveContainerRequest{ContainerId: removed})
	check("remove a removed container", err, codes.OK, codes.NotFound)
	_, err = rt.UpdateContainerResources(ctx(), &runtimeapi.UpdateContainerResourcesRequest{ContainerId: removed,
		Linux: &runtimeapi.LinuxContainerResources{CpuShares: 512}})
	check("update a removed container", err, codes.NotFound)
	_, err = rt.UpdateContainerResources(ctx(), &runtimeapi.UpdateContainerResourcesRequest{ContainerId: removed})
	check("update a removed container with no resources", err, codes.NotFound)
	_, err = rt.ContainerStatus(ctx(), &runtimeapi.ContainerStatusRequest{ContainerId: removed})
	check("status of a removed container", err, codes.NotFound)

	// Remove the pod while a creation in it is under way: the creation
	// either wins (and the container goes with the pod) or is refused.
	createErr := make(chan error, 1)
	go func() {
		_, err := e.create(t, e.config("racing", "sleep", "1000"))
		createErr <- err
	}()
	_, err = rt.StopPodSandbox(ctx(), &runtimeapi.StopPodSandboxRequest{PodSandboxId: e.pod})
	check("stop the pod", err, codes.OK)
	_, err = rt.StopPodSandbox(ctx(), &runtimeapi.StopPodSandboxRequest{PodSandboxId: e.pod})
	check("stop the pod twice", err, codes.OK)
	check("create while the pod stops", <-createErr, codes.OK, codes.FailedPrecondition, codes.NotFound)
	_, err = e.create(t, e.config("late", "true"))
	check("create in a stopped pod", err, codes.FailedPrecondition)
	_, err = rt.StartContainer(ctx(), &runtimeapi.StartContainerRequest{ContainerId: created})
	check("start a container of a stopped pod", err, codes.FailedPrecondition, codes.NotFound)
	_, err = rt.PortForward(ctx(), &runtimeapi.PortForwardRequest{PodSandboxId: e.pod, Port: []int32{80}})
	check("port-forward into a stopped pod", err, codes.FailedPrecondition)
	_, err = rt.RemovePodSandbox(ctx(), &runtimeapi.RemovePodSandboxRequest{PodSandboxId: e.pod})
	check("remove the pod", err, codes.OK)
	_, err = rt.RemovePodSandbox(ctx(), &runtimeapi.RemovePodSandboxRequest{PodSandboxId: e.pod})
	check("remove the pod twice", err, codes.OK, codes.NotFound)
	_, err = rt.StopPodSandbox(ctx(), &runtimeapi.StopPodSandboxRequest{PodSandboxId: e.pod})
	check("stop a removed pod", err, codes.OK, codes.NotFound)
	_, err = rt.PodSandboxStatus(ctx(), &runtimeapi.PodSandboxStatusRequest{PodSandboxId: e.pod})
	check("status of a removed pod", err, codes.NotFound)
	_, err = rt.ExecSync(ctx(), &runtimeapi.ExecSyncRequest{ContainerId: running, Cmd: []string{"true"}})
	check("exec into a container of a removed pod", err, codes.NotFound)
	if _, err := rt.Version(ctx(), &runtimeapi.VersionRequest{}); err != nil {
		t.Fatalf("berthd stopped serving: %v", err)
	}
	assertNoPanic(t, e.d)
}
