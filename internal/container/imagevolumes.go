package container

import (
	"context"
	"fmt"
	"maps"
	"path/filepath"
	"slices"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/image"
	"github.com/berth-cri/berth/internal/spec"
	"github.com/berth-cri/berth/internal/store"
)

// imageVolume is an image volume of a container being created.
type imageVolume struct {
	image  *image.MountedImage
	source string // the image's root or its sub path, on the host
}

// imageVolumes are a creation's image volumes by container path.
type imageVolumes map[string]imageVolume

func (v imageVolumes) sources() map[string]string {
	out := make(map[string]string, len(v))
	for dst, vol := range v {
		out[dst] = vol.source
	}
	return out
}

// mountImageVolumes mounts the images the request's image volumes name,
// through the image service, which shares one mount of each image
// between containers; container id holds them until it is removed (or
// the creation is undone).
func (m *Manager) mountImageVolumes(ctx context.Context, id string, cfg *runtimeapi.ContainerConfig, u *undo) (imageVolumes, error) {
	out := imageVolumes{}
	for _, mt := range cfg.GetMounts() {
		if !spec.IsImageMount(mt) {
			continue
		}
		if len(out) == 0 {
			u.add(func() {
				if err := m.images.ReleaseImages(id); err != nil {
					m.log.Error("undo: release image volumes", "id", id, "error", err)
				}
			})
		}
		img, err := m.images.MountImage(ctx, mt.GetImage().GetImage(), id)
		if err != nil {
			return nil, fmt.Errorf("image volume %s: %w", mt.GetContainerPath(), err)
		}
		src := img.Path
		if sub := mt.GetImageSubPath(); sub != "" {
			if src, err = image.SubPath(img.Path, sub); err != nil {
				return nil, fmt.Errorf("image volume %s (image %s): %w", mt.GetContainerPath(), mt.GetImage().GetImage(), err)
			}
		}
		out[mt.GetContainerPath()] = imageVolume{image: img, source: src}
	}
	return out, nil
}

// adoptImageVolumes re-takes, at load, the image references meta's
// record says the container holds.
func (m *Manager) adoptImageVolumes(meta *Meta) {
	for _, mt := range meta.Mounts {
		if mt.Image != nil {
			m.images.AdoptImage(mt.Image.ID, meta.ID)
		}
	}
}

// RecordedImageVolumes lists the images that the container records under
// stateDir mount as volumes, for `berthd wipe`, which removes the records
// without a manager. An unreadable record is skipped.
func RecordedImageVolumes(stateDir string) ([]string, error) {
	records, err := store.Open(filepath.Join(stateDir, "containers"))
	if err != nil {
		return nil, err
	}
	ids, err := records.IDs()
	if err != nil {
		return nil, err
	}
	set := map[string]bool{}
	for _, id := range ids {
		var meta Meta
		if _, err := records.ReadCheck(id, metaFile, &meta); err != nil {
			continue
		}
		for _, mt := range meta.Mounts {
			if mt.Image != nil {
				set[mt.Image.ID] = true
			}
		}
	}
	return slices.Sorted(maps.Keys(set)), nil
}
