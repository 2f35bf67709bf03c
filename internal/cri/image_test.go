package cri

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/config"
	"github.com/berth-cri/berth/internal/image"
)

// TestImageHandlers checks the handlers' own duties (validation, the
// CRI's "missing is not an error" rules, code mapping) on real storage;
// the image service itself is tested in its package and end to end.
func TestImageHandlers(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("containers/storage needs root")
	}
	dir := t.TempDir()
	cfg := config.Default()
	cfg.Berth.Root, cfg.Berth.RunRoot, cfg.Berth.StateDir = filepath.Join(dir, "root"), filepath.Join(dir, "runroot"), filepath.Join(dir, "state")
	cfg.Berth.Image.RegistriesConf = filepath.Join(dir, "registries.conf")
	cfg.Berth.Image.RegistriesConfDir = filepath.Join(dir, "registries.conf.d")
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	svc := image.New(func() *config.Config { return cfg }, log, nil)
	t.Cleanup(func() { svc.Close() })
	s := New(Deps{Config: func() *config.Config { return cfg }, Log: log, Version: "test", Images: svc})
	sock := filepath.Join(dir, "berth.sock")
	if err := s.Listen(sock); err != nil {
		t.Fatal(err)
	}
	go s.Serve()
	t.Cleanup(func() { s.Stop(time.Second) })
	c := runtimeapi.NewImageServiceClient(dial(t, sock))
	ctx := context.Background()
	spec := func(name string) *runtimeapi.ImageSpec { return &runtimeapi.ImageSpec{Image: name} }

	st, err := c.ImageStatus(ctx, &runtimeapi.ImageStatusRequest{Image: spec("quay.io/none/such:1")})
	if err != nil || st.Image != nil {
		t.Errorf("status of a missing image: %v, %v; want an empty answer", st, err)
	}
	if _, err := c.RemoveImage(ctx, &runtimeapi.RemoveImageRequest{Image: spec("quay.io/none/such:1")}); err != nil {
		t.Errorf("removing a missing image: %v, want success", err)
	}
	for name, call := range map[string]func() error{
		"ImageStatus": func() error { _, err := c.ImageStatus(ctx, &runtimeapi.ImageStatusRequest{}); return err },
		"PullImage":   func() error { _, err := c.PullImage(ctx, &runtimeapi.PullImageRequest{Image: spec("")}); return err },
		"RemoveImage": func() error { _, err := c.RemoveImage(ctx, &runtimeapi.RemoveImageRequest{}); return err },
		"PullBadName": func() error {
			_, err := c.PullImage(ctx, &runtimeapi.PullImageRequest{Image: spec("Bad Name")})
			return err
		},
	} {
		if err := call(); status.Code(err) != codes.InvalidArgument {
			t.Errorf("%s: %v, want InvalidArgument", name, err)
		}
	}
	list, err := c.ListImages(ctx, &runtimeapi.ListImagesRequest{})
	if err != nil || len(list.Images) != 0 {
		t.Errorf("list of empty storage: %v, %v", list, err)
	}
	fs, err := c.ImageFsInfo(ctx, &runtimeapi.ImageFsInfoRequest{})
	if err != nil || len(fs.ImageFilesystems) != 1 || fs.ImageFilesystems[0].FsId.Mountpoint != cfg.Berth.Root {
		t.Errorf("fs info: %v, %v", fs, err)
	}
}

func TestToCRIImage(t *testing.T) {
	uid := int64(1000)
	img := toCRIImage(&image.ImageInfo{ID: "abc", RepoTags: []string{"a:1"}, Size: 5, UID: &uid, Pinned: true})
	if img.Id != "abc" || img.GetUid().GetValue() != 1000 || img.Username != "" || !img.Pinned || img.Spec.Image != "abc" {
		t.Errorf("toCRIImage = %v", img)
	}
	if img := toCRIImage(&image.ImageInfo{ID: "abc", Username: "app"}); img.Uid != nil || img.Username != "app" {
		t.Errorf("toCRIImage with a user name = %v", img)
	}
}
