package cri

import (
	"context"
	"encoding/json"
	"errors"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-cri/berth/internal/errdefs"
	"github.com/berth-cri/berth/internal/image"
)

// images returns the image service, or Unimplemented when none is wired.

// ListImages lists local images, all or the one the filter names.
func (s *imageService) ListImages(ctx context.Context, req *runtimeapi.ListImagesRequest) (*runtimeapi.ListImagesResponse, error) {
	items, err := s.listImages(ctx, req.GetFilter())
	if err != nil {
		return nil, err
	}
	return &runtimeapi.ListImagesResponse{Images: items}, nil
}

// listImages builds the answer of ListImages and StreamImages.
func (s *imageService) listImages(ctx context.Context, f *runtimeapi.ImageFilter) ([]*runtimeapi.Image, error) {
	infos, err := s.deps.Images.List(ctx, f.GetImage().GetImage())
	if err != nil {
		return nil, toStatus(err)
	}
	items := make([]*runtimeapi.Image, 0, len(infos))
	for _, info := range infos {
		items = append(items, toCRIImage(info))
	}
	return items, nil
}

// ImageStatus describes one image; a missing image is an empty answer,
// not an error, as the CRI says.
func (s *imageService) ImageStatus(ctx context.Context, req *runtimeapi.ImageStatusRequest) (*runtimeapi.ImageStatusResponse, error) {
	name := req.GetImage().GetImage()
	if name == "" {
		return nil, invalid("ImageStatus: image is required")
	}
	info, err := s.deps.Images.Resolve(ctx, name)
	if errors.Is(err, errdefs.ErrNotFound) {
		return &runtimeapi.ImageStatusResponse{}, nil
	}
	if err != nil {
		return nil, toStatus(err)
	}
	resp := &runtimeapi.ImageStatusResponse{Image: toCRIImage(info)}
	if req.GetVerbose() {
		verbose, err := json.Marshal(map[string]any{
			"id":          info.ID,
			"repoTags":    info.RepoTags,
			"repoDigests": info.RepoDigests,
			"digest":      info.Digest,
			"topLayer":    info.TopLayer,
			"pinned":      info.Pinned,
			"imageSpec":   info.Config,
		})
		if err != nil {
			return nil, toStatus(err)
		}
		resp.Info = map[string]string{"info": string(verbose)}
	}
	return resp, nil
}

// PullImage pulls an image and answers with its ID.
func (s *imageService) PullImage(ctx context.Context, req *runtimeapi.PullImageRequest) (*runtimeapi.PullImageResponse, error) {
	name := req.GetImage().GetImage()
	if name == "" {
		return nil, invalid("PullImage: image is required")
	}
	var auth *image.Auth
	if a := req.GetAuth(); a != nil {
		auth = &image.Auth{
			Username:      a.GetUsername(),
			Password:      a.GetPassword(),
			Auth:          a.GetAuth(),
			IdentityToken: a.GetIdentityToken(),
			RegistryToken: a.GetRegistryToken(),
		}
	}
	id, err := s.deps.Images.Pull(ctx, name, auth)
	if err != nil {
		return nil, toStatus(err)
	}
	return &runtimeapi.PullImageResponse{ImageRef: id}, nil
}

// RemoveImage removes an image or one of its tags; removing a missing
// image succeeds, as the CRI asks.
func (s *imageService) RemoveImage(ctx context.Context, req *runtimeapi.RemoveImageRequest) (*runtimeapi.RemoveImageResponse, error) {
	name := req.GetImage().GetImage()
	if name == "" {
		return nil, invalid("RemoveImage: image is required")
	}
	if err := s.deps.Images.Remove(ctx, name); err != nil && !errors.Is(err, errdefs.ErrNotFound) {
		return nil, toStatus(err)
	}
	return &runtimeapi.RemoveImageResponse{}, nil
}

// ImageFsInfo reports the space images and container writable layers use.
func (s *imageService) ImageFsInfo(ctx context.Context, _ *runtimeapi.ImageFsInfoRequest) (*runtimeapi.ImageFsInfoResponse, error) {
	info, err := s.deps.Images.FsInfo(ctx)
	if err != nil {
		return nil, toStatus(err)
	}
	usage := func(u image.FsUsage) *runtimeapi.FilesystemUsage {
		return &runtimeapi.FilesystemUsage{
			Timestamp:  info.Timestamp.UnixNano(),
			FsId:       &runtimeapi.FilesystemIdentifier{Mountpoint: u.Mountpoint},
			UsedBytes:  &runtimeapi.UInt64Value{Value: u.UsedBytes},
			InodesUsed: &runtimeapi.UInt64Value{Value: u.InodesUsed},
		}
	}
	return &runtimeapi.ImageFsInfoResponse{
		ImageFilesystems:     []*runtimeapi.FilesystemUsage{usage(info.Images)},
		ContainerFilesystems: []*runtimeapi.FilesystemUsage{usage(info.Containers)},
	}, nil
}

func toCRIImage(info *image.ImageInfo) *runtimeapi.Image {
	img := &runtimeapi.Image{
		Id:          info.ID,
		RepoTags:    info.RepoTags,
		RepoDigests: info.RepoDigests,
		Size:        info.Size,
		Username:    info.Username,
		Pinned:      info.Pinned,
		Spec:        &runtimeapi.ImageSpec{Image: info.ID},
	}
	if info.UID != nil {
		img.Uid = &runtimeapi.Int64Value{Value: *info.UID}
	}
	return img
}
