// Package store keeps berth's own records on disk: one directory per pod
// or container, holding JSON files written atomically (temp file, fsync,
// rename, fsync dir) so that a crash at any point leaves either the old
// or the new record, never a torn one.
package store

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// Dir is the root of one kind of record, e.g. /var/lib/berth/pods.
type Dir struct {
	root string
}

// Open makes sure root exists and returns a Dir for it.
func Open(root string) (Dir, error) {
	if err := os.MkdirAll(root, 0o700); err != nil {
		return Dir{}, fmt.Errorf("open store %s: %w", root, err)
	}
	return Dir{root: root}, nil
}

// Path returns the directory of record id (it may not exist yet).
func (d Dir) Path(id string) string { return filepath.Join(d.root, id) }

// Create makes the directory of a new record.
func (d Dir) Create(id string) (string, error) {
	p := d.Path(id)
	if err := os.MkdirAll(p, 0o700); err != nil {
		return "", fmt.Errorf("create record %s: %w", id, err)
	}
	return p, nil
}

// Remove deletes record id and everything in its directory.
func (d Dir) Remove(id string) error {
	if err := os.RemoveAll(d.Path(id)); err != nil {
		return fmt.Errorf("remove record %s: %w", id, err)
	}
	return nil
}

// IDs lists the records present on disk.
func (d Dir) IDs() ([]string, error) {
	ents, err := os.ReadDir(d.root)
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", d.root, err)
	}
	ids := make([]string, 0, len(ents))
	for _, e := range ents {
		if e.IsDir() {
			ids = append(ids, e.Name())
		}
	}
	return ids, nil
}

// Write stores v as JSON in file name of record id, atomically.
func (d Dir) Write(id, name string, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode %s of %s: %w", name, id, err)
	}
	if err := WriteFileAtomic(filepath.Join(d.Path(id), name), data, 0o600); err != nil {
		return fmt.Errorf("write %s of %s: %w", name, id, err)
	}
	return nil
}

// Read loads file name of record id into v. A missing file gives an
// error wrapping fs.ErrNotExist.
func (d Dir) Read(id, name string, v any) error {
	data, err := os.ReadFile(filepath.Join(d.Path(id), name))
	if err != nil {
		return fmt.Errorf("read %s of %s: %w", name, id, err)
	}
	if err := json.Unmarshal(data, v); err != nil {
		return fmt.Errorf("decode %s of %s: %w", name, id, err)
	}
	return nil
}

// IsNotExist reports whether err means a record or file is missing.
func IsNotExist(err error) bool { return errors.Is(err, fs.ErrNotExist) }

// WriteFileAtomic replaces path with data so that readers and crashes
// see either the old or the new content.
func WriteFileAtomic(path string, data []byte, perm os.FileMode) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp) // no-op once renamed
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Chmod(perm); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
