// Package atomicfile replaces files so that readers see the old content or
// the new one, never a torn write, even across a crash.
//
// It is one of the project's own packages, with no compatibility promise
// to outside importers; a backend uses pkg/api and pkg/agentclient.
package atomicfile

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// Write replaces path with data: a temp file in the same directory, fsync,
// rename, then fsync of the directory so the rename itself is durable.
func Write(path string, data []byte, mode os.FileMode) error {
	return write(path, mode, os.Rename, func(f *os.File) error {
		_, err := f.Write(data)
		return err
	})
}

// Create makes path, which must not exist, with what fill writes into the
// open file: a temp file in the same directory, fsync, then a hard link to
// path, which unlike a rename never replaces a file that appeared
// meanwhile. Readers see no file or the whole of it. If path exists, the
// error matches fs.ErrExist and path is left as it was.
func Create(path string, mode os.FileMode, fill func(*os.File) error) error {
	return write(path, mode, func(tmp, path string) error {
		if err := os.Link(tmp, path); err != nil {
			return err
		}
		return os.Remove(tmp)
	}, fill)
}

// write fills a temp file beside path and gives it path's name with
// place, which leaves no file at the temp name.
func write(path string, mode os.FileMode, place func(tmp, path string) error, fill func(*os.File) error) (err error) {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("atomicfile: %w", err)
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			f.Close()
			if rmErr := os.Remove(tmp); rmErr != nil && !errors.Is(rmErr, fs.ErrNotExist) {
				err = errors.Join(err, rmErr) // a temp file left behind is worth knowing
			}
		}
	}()
	if err = f.Chmod(mode); err != nil {
		return fmt.Errorf("atomicfile: %w", err)
	}
	if err = fill(f); err != nil {
		return fmt.Errorf("atomicfile: %w", err)
	}
	if err = f.Sync(); err != nil {
		return fmt.Errorf("atomicfile: %w", err)
	}
	if err = f.Close(); err != nil {
		return fmt.Errorf("atomicfile: %w", err)
	}
	if err = place(tmp, path); err != nil {
		return fmt.Errorf("atomicfile: %w", err)
	}
	return syncDir(dir)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("atomicfile: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("atomicfile: sync %s: %w", dir, err)
	}
	return nil
}
