// Package store keeps berth's own records on disk: one directory per pod
// or container, holding JSON files written atomically (temp file, fsync,
// rename, fsync dir) so that a crash at any point leaves either the old
// or the new record, never a torn one.
//
// Each write also keeps the previous complete copy as "<name>.prev" (a
// hard link made before the rename, so it costs no copy). A record that
// is torn anyway (a power loss after an unsynced write, a disk fault, a
// hand edit) is then read from that older copy instead of stopping the
// daemon; Read reports which one it used.
package store

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// PrevSuffix names the previous complete copy of a record file.
const PrevSuffix = ".prev"

// ErrCorrupt is wrapped by Read when neither the file nor its previous
// copy decodes.
var ErrCorrupt = errors.New("record is corrupt")

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

// Root is the directory holding the records.
func (d Dir) Root() string { return d.root }

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

// Write stores v as JSON in file name of record id, atomically and
// durably, keeping the previous copy.
func (d Dir) Write(id, name string, v any) error {
	return d.write(id, name, v, true)
}

// WriteVolatile is Write without the fsyncs, for records that can be
// re-derived after a power loss (the only case fsync guards against; a
// crash of berthd loses nothing that reached the page cache).
func (d Dir) WriteVolatile(id, name string, v any) error {
	return d.write(id, name, v, false)
}

func (d Dir) write(id, name string, v any, sync bool) error {
	data, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode %s of %s: %w", name, id, err)
	}
	if err := writeFile(filepath.Join(d.Path(id), name), data, 0o600, sync, true); err != nil {
		return fmt.Errorf("write %s of %s: %w", name, id, err)
	}
	return nil
}

// Read loads file name of record id into v. A missing file gives an
// error wrapping fs.ErrNotExist. A file that does not decode is read
// from its previous copy; fromPrev then reports that, so the caller can
// log it. Both unreadable gives an error wrapping ErrCorrupt.
func (d Dir) Read(id, name string, v any) error {
	_, err := d.ReadCheck(id, name, v)
	return err
}

// ReadCheck is Read, also telling whether the previous copy was used.
func (d Dir) ReadCheck(id, name string, v any) (fromPrev bool, err error) {
	p := filepath.Join(d.Path(id), name)
	data, err := os.ReadFile(p)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return false, fmt.Errorf("read %s of %s: %w", name, id, err)
	}
	if err == nil {
		derr := json.Unmarshal(data, v)
		if derr == nil {
			return false, nil
		}
		err = fmt.Errorf("decode %s of %s: %w: %w", name, id, derr, ErrCorrupt)
	}
	prev, perr := os.ReadFile(p + PrevSuffix)
	if perr != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return false, fmt.Errorf("read %s of %s: %w", name, id, err)
		}
		return false, err
	}
	if derr := json.Unmarshal(prev, v); derr != nil {
		if errors.Is(err, fs.ErrNotExist) {
			// Only a torn .prev of a file never written since: treat as
			// missing, there is nothing complete to go back to.
			return false, fmt.Errorf("read %s of %s: %w", name, id, fs.ErrNotExist)
		}
		return false, fmt.Errorf("%w; previous copy: %w", err, derr)
	}
	return true, nil
}

// IsNotExist reports whether err means a record or file is missing.
func IsNotExist(err error) bool { return errors.Is(err, fs.ErrNotExist) }

// IsCorrupt reports whether err means a record exists but is unreadable.
func IsCorrupt(err error) bool { return errors.Is(err, ErrCorrupt) }

// WriteFileAtomic replaces path with data so that readers and crashes
// see either the old or the new content.
func WriteFileAtomic(path string, data []byte, perm os.FileMode) error {
	return writeFile(path, data, perm, true, false)
}

func writeFile(path string, data []byte, perm os.FileMode, sync, keepPrev bool) error {
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
	if sync {
		if err := f.Sync(); err != nil {
			f.Close()
			return err
		}
	}
	if err := f.Close(); err != nil {
		return err
	}
	if keepPrev {
		// The current file becomes the previous copy by a second name:
		// at every instant at least one complete copy exists.
		prev := path + PrevSuffix
		ptmp := tmp + PrevSuffix
		if err := os.Link(path, ptmp); err == nil {
			if err := os.Rename(ptmp, prev); err != nil {
				os.Remove(ptmp)
			}
		}
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	if !sync {
		return nil
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
