// Command deviceplugin is a minimal kubelet device plugin for the kubelet
// end-to-end tests: it offers one healthy device of one resource and
// answers every allocation with one CDI device, either in the response's
// cdi_devices (how device plugins hand CDI devices to the kubelet today)
// or as a cdi.k8s.io annotation (the older form), so that the kubelet
// passes it to the runtime. It registers with the kubelet and serves
// until SIGTERM; it re-registers when the kubelet removes its socket
// (a kubelet restart). With --pod-resources it then polls the kubelet's
// pod-resources API until its device is allocatable (registered and
// healthy in the device manager) and logs "allocatable": only then does
// the kubelet admit a pod asking for it. (The device manager's
// checkpoint file is no such signal: a kubelet restart reloads it with
// the devices listed but none healthy.)
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	pluginapi "k8s.io/kubelet/pkg/apis/deviceplugin/v1beta1"
	podresourcesapi "k8s.io/kubelet/pkg/apis/podresources/v1"
)

type plugin struct {
	pluginapi.UnimplementedDevicePluginServer
	cdiName string
	// annotation, when set, is the annotation key the CDI device is
	// returned under instead of cdi_devices.
	annotation string
	done       chan struct{}
}

func (p *plugin) GetDevicePluginOptions(context.Context, *pluginapi.Empty) (*pluginapi.DevicePluginOptions, error) {
	return &pluginapi.DevicePluginOptions{}, nil
}

func (p *plugin) ListAndWatch(_ *pluginapi.Empty, s grpc.ServerStreamingServer[pluginapi.ListAndWatchResponse]) error {
	if err := s.Send(&pluginapi.ListAndWatchResponse{Devices: []*pluginapi.Device{{ID: "dev0", Health: pluginapi.Healthy}}}); err != nil {
		return err
	}
	select {
	case <-s.Context().Done():
	case <-p.done:
	}
	return nil
}

func (p *plugin) Allocate(_ context.Context, req *pluginapi.AllocateRequest) (*pluginapi.AllocateResponse, error) {
	resp := &pluginapi.AllocateResponse{}
	for _, c := range req.GetContainerRequests() {
		log.Printf("allocate %v", c.GetDevicesIds())
		r := &pluginapi.ContainerAllocateResponse{}
		if p.annotation != "" {
			r.Annotations = map[string]string{p.annotation: p.cdiName}
		} else {
			r.CdiDevices = []*pluginapi.CDIDevice{{Name: p.cdiName}}
		}
		resp.ContainerResponses = append(resp.ContainerResponses, r)
	}
	return resp, nil
}

func (p *plugin) PreStartContainer(context.Context, *pluginapi.PreStartContainerRequest) (*pluginapi.PreStartContainerResponse, error) {
	return &pluginapi.PreStartContainerResponse{}, nil
}

func (p *plugin) GetPreferredAllocation(context.Context, *pluginapi.PreferredAllocationRequest) (*pluginapi.PreferredAllocationResponse, error) {
	return &pluginapi.PreferredAllocationResponse{}, nil
}

func main() {
	resource := flag.String("resource", "", "extended resource name, e.g. berth.test/null")
	cdiName := flag.String("cdi", "", "qualified CDI device name returned for every allocation")
	annotation := flag.String("annotation", "", "return the CDI device under this cdi.k8s.io/ annotation key instead of cdi_devices")
	socket := flag.String("socket", "", "socket file name in the kubelet's device plugin dir")
	podResources := flag.String("pod-resources", "", "the kubelet's pod-resources socket: log \"allocatable\" once the device is")
	flag.Parse()
	if *resource == "" || *cdiName == "" || *socket == "" {
		log.Fatal("--resource, --cdi and --socket are required")
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	path := filepath.Join(pluginapi.DevicePluginPath, *socket)
	for ctx.Err() == nil {
		if err := serve(ctx, path, *resource, *podResources, &plugin{cdiName: *cdiName, annotation: *annotation, done: make(chan struct{})}); err != nil {
			log.Printf("serve: %v", err)
			select {
			case <-ctx.Done():
			case <-time.After(time.Second):
			}
		}
	}
}

// serve listens on path, registers resource with the kubelet and serves
// until ctx ends or the socket is removed.
func serve(ctx context.Context, path, resource, podResources string, p *plugin) error {
	_ = os.Remove(path)
	ln, err := net.Listen("unix", path)
	if err != nil {
		return err
	}
	srv := grpc.NewServer()
	pluginapi.RegisterDevicePluginServer(srv, p)
	go srv.Serve(ln)
	defer func() {
		close(p.done)
		srv.Stop()
		_ = os.Remove(path)
	}()
	conn, err := grpc.NewClient("unix://"+pluginapi.KubeletSocket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer conn.Close()
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := pluginapi.NewRegistrationClient(conn).Register(rctx, &pluginapi.RegisterRequest{
		Version: pluginapi.Version, Endpoint: filepath.Base(path), ResourceName: resource,
	}); err != nil {
		return fmt.Errorf("register %s: %w", resource, err)
	}
	log.Printf("registered %s on %s", resource, path)
	if podResources != "" {
		if err := waitAllocatable(ctx, podResources, resource); err != nil {
			return err
		}
		log.Printf("allocatable %s", resource)
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(time.Second):
			if _, err := os.Stat(path); err != nil {
				return fmt.Errorf("socket gone (kubelet restarted?): %w", err)
			}
		}
	}
}

// waitAllocatable polls the kubelet's pod-resources API until resource
// has an allocatable device.
func waitAllocatable(ctx context.Context, socket, resource string) error {
	conn, err := grpc.NewClient("unix://"+socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer conn.Close()
	client := podresourcesapi.NewPodResourcesListerClient(conn)
	var last error
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); {
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		resp, err := client.GetAllocatableResources(rctx, &podresourcesapi.AllocatableResourcesRequest{})
		cancel()
		if err == nil {
			for _, d := range resp.GetDevices() {
				if d.GetResourceName() == resource && len(d.GetDeviceIds()) > 0 {
					return nil
				}
			}
			err = fmt.Errorf("not among %d allocatable device groups", len(resp.GetDevices()))
		}
		last = err
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	return fmt.Errorf("%s never allocatable: %w", resource, last)
}
