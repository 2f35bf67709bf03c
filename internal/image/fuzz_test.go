package image

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.podman.io/image/v5/pkg/sysregistriesv2"
	"go.podman.io/image/v5/types"

	"github.com/berth-cri/berth/internal/errdefs"
)

// FuzzImageName feeds image names and registries.conf files to name
// resolution: checking, qualifying for import, and the pull and local
// candidates of short names. It must never panic; each refusal is
// InvalidArgument (the name) or FailedPrecondition (the node's
// registries.conf); every candidate is fully qualified and tagged or
// digested.
func FuzzImageName(f *testing.F) {
	conf := "unqualified-search-registries = [\"docker.io\"]\n[aliases]\n\"web\" = \"quay.io/org/web\"\n"
	for _, n := range []string{"busybox", "busybox:1.36", "web", "quay.io/a/b@sha256:" + strings.Repeat("a", 64),
		"localhost:5000/x", "docker://busybox", "UPPER", "a//b", "busybox:tag:tag", ":latest", "sha256:" + strings.Repeat("0", 64)} {
		f.Add(n, conf)
	}
	f.Add("app", "unqualified-search-registries = [\"a.io\", \"b.io\"]\n")
	f.Add("app", "[aliases]\n\"app\" = \"not a reference\"\n")
	f.Add("app", "unqualified-search-registries = [\"bad registry\"]\n[[registry]]\nlocation = \"\"\n")
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, name, registriesConf string) {
		path := filepath.Join(dir, "registries.conf")
		if err := os.WriteFile(path, []byte(registriesConf), 0o644); err != nil {
			t.Fatal(err)
		}
		// containers/image caches parsed files by path.
		sysregistriesv2.InvalidateCache()
		sys := &types.SystemContext{SystemRegistriesConfPath: path, SystemRegistriesConfDirPath: filepath.Join(dir, "none")}
		check := func(what string, err error) {
			if err != nil && !errors.Is(err, errdefs.ErrInvalidArgument) && !errors.Is(err, errdefs.ErrFailedPrecondition) {
				t.Fatalf("%s(%q): untyped refusal: %v", what, name, err)
			}
		}
		check("checkName", checkName(name))
		if q, err := qualify(name); err != nil {
			check("qualify", err)
		} else if isShortName(q.String()) {
			t.Fatalf("qualify(%q) = %s, still short", name, q)
		}
		for _, mode := range []string{"enforcing", "disabled"} {
			cands, err := pullCandidates(sys, name, mode)
			check("pullCandidates", err)
			for _, c := range cands {
				if isShortName(c.String()) || !strings.ContainsAny(c.String(), ":@") {
					t.Fatalf("pull candidate %s of %q is not fully qualified", c, name)
				}
			}
		}
		_, err := localCandidates(sys, name)
		check("localCandidates", err)
	})
}
