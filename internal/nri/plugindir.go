package nri

import (
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/containerd/nri/pkg/api"
)

// pluginDir returns the directory of pre-installed plugins to hand to the
// adaptation. The adaptation refuses to start at all when one executable
// in it is not named IDX-NAME, so such files are logged and left out:
// when there are any, the well-named plugins are linked into shadow (made
// afresh) and that directory is returned instead of dir.
func pluginDir(dir, shadow string, log *slog.Logger) (string, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		if os.IsNotExist(err) {
			return dir, nil
		}
		return "", fmt.Errorf("read nri_plugin_dir %s: %w", dir, err)
	}
	var good []string
	bad := 0
	for _, e := range ents {
		// The adaptation looks only at executable files.
		info, err := e.Info()
		if err != nil || e.IsDir() || info.Mode()&fs.FileMode(0o111) == 0 {
			continue
		}
		if _, _, err := api.ParsePluginName(e.Name()); err != nil {
			log.Error("NRI: pre-installed plugin skipped: its file name is not IDX-NAME", "file", filepath.Join(dir, e.Name()), "error", err)
			bad++
			continue
		}
		good = append(good, e.Name())
	}
	if bad == 0 {
		return dir, nil
	}
	if err := os.RemoveAll(shadow); err != nil {
		return "", fmt.Errorf("NRI plugin dir: %w", err)
	}
	if err := os.MkdirAll(shadow, 0o700); err != nil {
		return "", fmt.Errorf("NRI plugin dir: %w", err)
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", fmt.Errorf("NRI plugin dir: %w", err)
	}
	for _, name := range good {
		if err := os.Symlink(filepath.Join(abs, name), filepath.Join(shadow, name)); err != nil {
			return "", fmt.Errorf("NRI plugin dir: %w", err)
		}
	}
	return shadow, nil
}
