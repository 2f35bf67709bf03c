package config

import "path/filepath"

// validateExtensions checks the keys of the spec extensions: every
// directory and the default mounts file must be absolute paths.
func (r *Runtime) validateExtensions() []error {
	var errs []error
	for _, k := range []struct {
		key   string
		paths []string
	}{{"berth.runtime.cdi_spec_dirs", r.CDISpecDirs}, {"berth.runtime.hooks_dir", r.HooksDirs}} {
		for _, p := range k.paths {
			if !filepath.IsAbs(p) {
				errs = append(errs, fieldErr(k.key, "%q is not an absolute path", p))
			}
		}
	}
	if r.DefaultMountsFile != "" && !filepath.IsAbs(r.DefaultMountsFile) {
		errs = append(errs, fieldErr("berth.runtime.default_mounts_file", "%q is not an absolute path", r.DefaultMountsFile))
	}
	return errs
}
