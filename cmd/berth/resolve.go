package main

import (
	"fmt"
	"strings"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// candidate is one object a reference may name.
type candidate struct {
	id   string
	name string
}

// notFoundError says that no object matches a reference.
type notFoundError struct{ kind, ref string }

func (e *notFoundError) Error() string {
	return fmt.Sprintf("no %s matches %q", e.kind, e.ref)
}

// ambiguousError lists every object a too-short prefix matches.
type ambiguousError struct {
	kind, ref  string
	candidates []candidate
}

func (e *ambiguousError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %q is ambiguous; it matches %d %ss:", e.kind, e.ref, len(e.candidates), e.kind)
	for _, c := range e.candidates {
		fmt.Fprintf(&b, "\n  %s", c.id)
		if c.name != "" {
			fmt.Fprintf(&b, "  %s", c.name)
		}
	}
	return b.String()
}

// resolve picks the one candidate a reference names: a full ID, then a
// unique ID prefix, then a unique exact name. An image ID's "sha256:" may
// be given or left out.
func resolve(kind, ref string, all []candidate) (int, error) {
	ref = strings.TrimSpace(ref)
	if ref == "" {
		return -1, fmt.Errorf("empty %s ID", kind)
	}
	bare := strings.TrimPrefix(ref, "sha256:")
	var byPrefix, byName []int
	for i, c := range all {
		id := strings.TrimPrefix(c.id, "sha256:")
		if id == bare {
			return i, nil
		}
		if strings.HasPrefix(id, bare) {
			byPrefix = append(byPrefix, i)
		}
		if c.name == ref {
			byName = append(byName, i)
		}
	}
	for _, matches := range [][]int{byPrefix, byName} {
		switch len(matches) {
		case 0:
			continue
		case 1:
			return matches[0], nil
		default:
			e := &ambiguousError{kind: kind, ref: ref}
			for _, i := range matches {
				e.candidates = append(e.candidates, all[i])
			}
			return -1, e
		}
	}
	return -1, &notFoundError{kind: kind, ref: ref}
}

// resolveContainer finds the container a reference names.
func (c *client) resolveContainer(ref string) (*runtimeapi.Container, error) {
	ctx, cancel := c.ctx()
	defer cancel()
	resp, err := c.runtime.ListContainers(ctx, &runtimeapi.ListContainersRequest{})
	if err != nil {
		return nil, fmt.Errorf("list containers: %w", err)
	}
	cands := make([]candidate, len(resp.Containers))
	for i, ctr := range resp.Containers {
		cands[i] = candidate{id: ctr.Id, name: ctr.GetMetadata().GetName()}
	}
	i, err := resolve("container", ref, cands)
	if err != nil {
		return nil, err
	}
	return resp.Containers[i], nil
}

// resolveContainers resolves every reference, failing on the first miss.
func (c *client) resolveContainers(refs []string) ([]string, error) {
	ids := make([]string, 0, len(refs))
	for _, r := range refs {
		ctr, err := c.resolveContainer(r)
		if err != nil {
			return nil, err
		}
		ids = append(ids, ctr.Id)
	}
	return ids, nil
}

// resolvePod finds the pod sandbox a reference names.
func (c *client) resolvePod(ref string) (*runtimeapi.PodSandbox, error) {
	ctx, cancel := c.ctx()
	defer cancel()
	resp, err := c.runtime.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{})
	if err != nil {
		return nil, fmt.Errorf("list pod sandboxes: %w", err)
	}
	cands := make([]candidate, len(resp.Items))
	for i, p := range resp.Items {
		cands[i] = candidate{id: p.Id, name: p.GetMetadata().GetName()}
	}
	i, err := resolve("pod", ref, cands)
	if err != nil {
		return nil, err
	}
	return resp.Items[i], nil
}

// resolveImage finds an image by name (as the runtime resolves it), then
// by ID or ID prefix.
func (c *client) resolveImage(ref string) (*runtimeapi.Image, error) {
	ctx, cancel := c.ctx()
	defer cancel()
	st, err := c.images.ImageStatus(ctx, &runtimeapi.ImageStatusRequest{Image: &runtimeapi.ImageSpec{Image: ref}})
	if err == nil && st.Image != nil {
		return st.Image, nil
	}
	list, lerr := c.images.ListImages(ctx, &runtimeapi.ListImagesRequest{})
	if lerr != nil {
		if err != nil {
			return nil, fmt.Errorf("image status of %s: %w", ref, err)
		}
		return nil, fmt.Errorf("list images: %w", lerr)
	}
	cands := make([]candidate, len(list.Images))
	for i, img := range list.Images {
		cands[i] = candidate{id: img.Id, name: strings.Join(img.RepoTags, ",")}
	}
	i, rerr := resolve("image", ref, cands)
	if rerr != nil {
		return nil, rerr
	}
	return list.Images[i], nil
}
