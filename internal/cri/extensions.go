package cri

import (
	"encoding/json"

	"github.com/berth-cri/berth/internal/ociext"
)

// addExtensionsInfo adds the verbose Status entries "cdi", "hooks" and
// "default_mounts": the known CDI devices, the loaded OCI hooks and the
// default mounts, each with the files skipped and why.
func addExtensionsInfo(info map[string]string, report func() ociext.Report) error {
	if report == nil {
		return nil
	}
	r := report()
	for k, v := range map[string]any{"cdi": r.CDI, "hooks": r.Hooks, "default_mounts": r.DefaultMounts} {
		b, err := json.Marshal(v)
		if err != nil {
			return err
		}
		info[k] = string(b)
	}
	return nil
}
