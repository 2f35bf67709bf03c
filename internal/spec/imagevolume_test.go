package spec

import (
	"errors"
	"slices"
	"strings"
	"testing"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/errdefs"
)

func TestImageMountValidation(t *testing.T) {
	img := &runtimeapi.ImageSpec{Image: "sha256:abc"}
	for _, tc := range []struct {
		m    *runtimeapi.Mount
		want string // in the message; "" means valid
	}{
		{&runtimeapi.Mount{ContainerPath: "/v", Image: img, Readonly: true}, ""},
		{&runtimeapi.Mount{ContainerPath: "/v", Image: img, ImageSubPath: "a/b"}, ""},
		{&runtimeapi.Mount{ContainerPath: "/v", Image: img, HostPath: "/tmp"}, "host_path and image"},
		{&runtimeapi.Mount{ContainerPath: "/v", Image: img, ImageSubPath: "a/../../etc"}, "image_sub_path"},
		{&runtimeapi.Mount{ContainerPath: "/v", Image: img, ImageSubPath: "/etc"}, "image_sub_path"},
		{&runtimeapi.Mount{ContainerPath: "/v", HostPath: "/tmp", ImageSubPath: "a"}, "image_sub_path is set without image"},
	} {
		err := ValidateMounts([]*runtimeapi.Mount{tc.m})
		if tc.want == "" {
			if err != nil {
				t.Errorf("%v: %v", tc.m, err)
			}
			continue
		}
		if !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: %v, want InvalidArgument naming %q", tc.m, err, tc.want)
		}
	}
}

func TestImageMountIsReadOnlyBind(t *testing.T) {
	m := &runtimeapi.Mount{ContainerPath: "/v", Image: &runtimeapi.ImageSpec{Image: "x"}, MountOptions: []string{"noexec", "nosuid", "nodev"}}
	out, _, err := userMounts([]*runtimeapi.Mount{m}, map[string]string{"/v": "/mnt/img/sub"})
	if err != nil {
		t.Fatal(err)
	}
	got := out[0]
	if got.Source != "/mnt/img/sub" || got.Type != "bind" {
		t.Fatalf("mount %+v", got)
	}
	for _, o := range []string{"rbind", "ro", "noexec", "nosuid", "nodev"} {
		if !slices.Contains(got.Options, o) {
			t.Errorf("options %v lack %s", got.Options, o)
		}
	}
	if _, _, err := userMounts([]*runtimeapi.Mount{m}, nil); err == nil {
		t.Fatal("an image mount without its source was accepted")
	}
}
