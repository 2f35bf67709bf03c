package main

import (
	"errors"
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

// pick resolves a reference among listed items, named by candidate.
func pick[T any](kind, ref string, items []T, cand func(T) candidate) (T, error) {
	cands := make([]candidate, len(items))
	for i, it := range items {
		cands[i] = cand(it)
	}
	i, err := resolve(kind, ref, cands)
	if err != nil {
		var zero T
		return zero, err
	}
	return items[i], nil
}

// resolveContainer finds the container a reference names.
func (c *client) resolveContainer(ref string) (*runtimeapi.Container, error) {
	resp, err := call(c, "list containers", c.listContainersRPC, &runtimeapi.ListContainersRequest{})
	if err != nil {
		return nil, err
	}
	return pick("container", ref, resp.Containers, func(ctr *runtimeapi.Container) candidate {
		return candidate{id: ctr.Id, name: ctr.GetMetadata().GetName()}
	})
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
	resp, err := call(c, "list pod sandboxes", c.listPodSandboxRPC, &runtimeapi.ListPodSandboxRequest{})
	if err != nil {
		return nil, err
	}
	return pick("pod", ref, resp.Items, func(p *runtimeapi.PodSandbox) candidate {
		return candidate{id: p.Id, name: p.GetMetadata().GetName()}
	})
}

// identified is a CRI object with an ID: a container, pod or image.
type identified interface{ GetId() string }

// ids are the objects' IDs, in order.
func ids[T identified](items []T) []string {
	out := make([]string, len(items))
	for i, it := range items {
		out[i] = it.GetId()
	}
	return out
}

// eachID resolves each reference with find and runs fn on its ID, going
// on past failures and returning them all.
func eachID[T identified](refs []string, find func(string) (T, error), fn func(id string) error) error {
	var errs []error
	for _, ref := range refs {
		obj, err := find(ref)
		if err == nil {
			err = fn(obj.GetId())
		}
		if err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
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
	list, lerr := c.listImagesRPC(ctx, &runtimeapi.ListImagesRequest{})
	if lerr != nil {
		if err != nil {
			return nil, fmt.Errorf("image status of %s: %w", ref, err)
		}
		return nil, fmt.Errorf("list images: %w", lerr)
	}
	return pick("image", ref, list.Images, func(img *runtimeapi.Image) candidate {
		return candidate{id: img.Id, name: strings.Join(img.RepoTags, ",")}
	})
}
