package image

import (
	"fmt"
	"slices"
	"strings"

	"go.podman.io/image/v5/docker/reference"
	"go.podman.io/image/v5/pkg/sysregistriesv2"
	"go.podman.io/image/v5/types"

	"github.com/berth-cri/berth/internal/errdefs"
)

// Short-name resolution follows containers-registries.conf(5) on top of
// sysregistriesv2, which parses the aliases and unqualified-search
// registries. containers/image's pkg/shortnames is not used: it links an
// interactive terminal prompt (and a module berth does not otherwise
// need) that a daemon must never show, and berth applies its own
// short_name_mode.

// splitShort parses name without normalizing it and reports whether it
// is a short name: one with no registry (no '.', ':' or "localhost" in
// its first component) and no digest-only form. A name that is not short
// is returned normalized ("docker.io/foo" to "docker.io/library/foo").
func splitShort(name string) (bool, reference.Named, error) {
	ref, err := reference.Parse(name)
	if err != nil {
		return false, nil, fmt.Errorf("image %q is not a valid image name: %v: %w", name, err, errdefs.ErrInvalidArgument)
	}
	named, ok := ref.(reference.Named)
	if !ok {
		return false, nil, fmt.Errorf("image %q is not a named reference: %w", name, errdefs.ErrInvalidArgument)
	}
	registry := reference.Domain(named)
	if strings.ContainsAny(registry, ".:") || registry == "localhost" {
		named, err = reference.ParseNormalizedNamed(name)
		if err != nil {
			return false, nil, fmt.Errorf("image %q is not a valid image name: %v: %w", name, err, errdefs.ErrInvalidArgument)
		}
		return false, named, nil
	}
	return true, named, nil
}

// isShortName reports whether name names no registry.
func isShortName(name string) bool {
	short, _, err := splitShort(name)
	return err == nil && short
}

// withTagOrDigest re-applies the tag and digest of from to repo; with
// neither, the tag is "latest".
func withTagOrDigest(repo reference.Named, from reference.Named) (reference.Named, error) {
	out := reference.TrimNamed(repo)
	var err error
	if t, ok := from.(reference.Tagged); ok {
		if out, err = reference.WithTag(out, t.Tag()); err != nil {
			return nil, err
		}
	}
	if d, ok := from.(reference.Digested); ok {
		if out, err = reference.WithDigest(out, d.Digest()); err != nil {
			return nil, err
		}
	}
	return reference.TagNameOnly(out), nil
}

// resolution is where a short name may come from.
type resolution struct {
	// alias is set when registries.conf has an alias for the name; it
	// is then the only candidate.
	alias reference.Named
	// search are the name completed with each unqualified-search
	// registry, in order.
	search []reference.Named
}

// resolveShort looks a short name up in the aliases and completes it
// with the unqualified-search registries.
func resolveShort(sys *types.SystemContext, short reference.Named) (*resolution, error) {
	repo := reference.TrimNamed(short).String()
	alias, _, err := sysregistriesv2.ResolveShortNameAlias(sys, repo)
	if err != nil {
		return nil, fmt.Errorf("short-name aliases: %v: %w", err, errdefs.ErrFailedPrecondition)
	}
	res := &resolution{}
	if alias != nil {
		if res.alias, err = withTagOrDigest(alias, short); err != nil {
			return nil, fmt.Errorf("alias %s: %v: %w", alias, err, errdefs.ErrFailedPrecondition)
		}
	}
	registries, err := sysregistriesv2.UnqualifiedSearchRegistries(sys)
	if err != nil {
		return nil, fmt.Errorf("read registries.conf: %v: %w", err, errdefs.ErrFailedPrecondition)
	}
	for _, reg := range registries {
		named, err := reference.ParseNormalizedNamed(reg + "/" + short.String())
		if err != nil {
			return nil, fmt.Errorf("complete %q with unqualified-search registry %q: %v: %w", short, reg, err, errdefs.ErrFailedPrecondition)
		}
		res.search = append(res.search, reference.TagNameOnly(named))
	}
	return res, nil
}

// pullCandidates returns the fully qualified references a pull of name
// tries, in order: the name itself when qualified, else its alias, else
// the unqualified-search registries. With short_name_mode "enforcing",
// a short name that more than one search registry could serve is an
// error: containers/image would prompt on a terminal, and a daemon has
// nobody to ask.
func pullCandidates(sys *types.SystemContext, name, mode string) ([]reference.Named, error) {
	short, named, err := splitShort(name)
	if err != nil {
		return nil, err
	}
	if !short {
		return []reference.Named{reference.TagNameOnly(named)}, nil
	}
	res, err := resolveShort(sys, named)
	if err != nil {
		return nil, err
	}
	if res.alias != nil {
		return []reference.Named{res.alias}, nil
	}
	switch {
	case len(res.search) == 0:
		return nil, fmt.Errorf("short name %q has no alias and no unqualified-search registries are configured in %s: %w",
			name, sysregistriesv2.ConfigurationSourceDescription(sys), errdefs.ErrFailedPrecondition)
	case len(res.search) > 1 && mode == "enforcing":
		names := make([]string, len(res.search))
		for i, c := range res.search {
			names[i] = c.String()
		}
		return nil, fmt.Errorf("short name %q is ambiguous: it could be %s (short_name_mode is enforcing: use a fully qualified name or add an alias in registries.conf): %w",
			name, strings.Join(names, ", "), errdefs.ErrFailedPrecondition)
	}
	return res.search, nil
}

// localCandidates returns the names a local image called name may have,
// in order: the name itself when qualified, else its alias, localhost/
// (where imported short names go), each unqualified-search registry, and
// last docker.io, which is where Docker's own normalization puts a short
// name (docker-archive tags such as "busybox:1.36" land there). Unlike
// pulls, local lookups cannot be spoofed by a registry, so trying
// docker.io last costs nothing and spares operators surprises.
func localCandidates(sys *types.SystemContext, name string) ([]reference.Named, error) {
	short, named, err := splitShort(name)
	if err != nil {
		return nil, err
	}
	if !short {
		return []reference.Named{reference.TagNameOnly(named)}, nil
	}
	res, err := resolveShort(sys, named)
	if err != nil {
		return nil, err
	}
	var out []reference.Named
	if res.alias != nil {
		out = append(out, res.alias)
	}
	local, err := reference.ParseNormalizedNamed("localhost/" + named.String())
	if err != nil {
		return nil, fmt.Errorf("image %q is not a valid image name: %v: %w", name, err, errdefs.ErrInvalidArgument)
	}
	out = append(out, reference.TagNameOnly(local))
	out = append(out, res.search...)
	if hub, err := reference.ParseNormalizedNamed(name); err == nil {
		hub = reference.TagNameOnly(hub)
		if !slices.ContainsFunc(out, func(n reference.Named) bool { return n.String() == hub.String() }) {
			out = append(out, hub)
		}
	}
	return out, nil
}
