package isoimage

import (
	"context"
	"errors"
	"fmt"
	"io"
	iofs "io/fs"
	"os"
	"sort"

	"github.com/diskfs/go-diskfs/backend/file"
	"github.com/diskfs/go-diskfs/filesystem/iso9660"
)

// ErrNotISO reports a file that holds no ISO 9660 volume.
var ErrNotISO = errors.New("not an ISO 9660 image")

// Image is an ISO image opened for reading. File names are the ones a Linux
// reader sees: Rock Ridge names when the image has them, else the plain ISO
// 9660 names without their ";1" version.
type Image struct {
	path string
	f    *os.File
	fs   *iso9660.FileSystem
	vols Volumes
}

// Open opens the image at path read-only.
func Open(path string) (*Image, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("isoimage: %w", err)
	}
	vols, err := ReadVolumes(f)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("isoimage: %s: %w", path, err)
	}
	fs, err := iso9660.Read(file.New(f, true), 0, 0, 2048)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("isoimage: %s: %w: %v", path, ErrNotISO, err)
	}
	return &Image{path: path, f: f, fs: fs, vols: vols}, nil
}

// Close releases the image file.
func (im *Image) Close() error { return im.f.Close() }

// Volumes describes the image's volume descriptors.
func (im *Image) Volumes() Volumes { return im.vols }

// Names lists the entries of dir ("." for the root), sorted.
func (im *Image) Names(dir string) ([]string, error) {
	des, err := im.fs.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("isoimage: %s: %w", im.path, err)
	}
	names := make([]string, 0, len(des))
	for _, de := range des {
		names = append(names, de.Name())
	}
	sort.Strings(names)
	return names, nil
}

// Exists tells whether name is a regular file on the image.
func (im *Image) Exists(name string) bool {
	fi, err := im.fs.Stat(name)
	return err == nil && !fi.IsDir()
}

// ReadFile returns the content of a small file.
func (im *Image) ReadFile(name string) ([]byte, error) {
	b, err := im.fs.ReadFile(name)
	if err != nil {
		return nil, fmt.Errorf("isoimage: %s: %s: %w", im.path, name, err)
	}
	return b, nil
}

// CopyFile streams the file name to dst (mode 0644), atomically: a temp file
// beside dst, renamed into place when complete. It stops when ctx ends.
func (im *Image) CopyFile(ctx context.Context, name, dst string) (n int64, err error) {
	src, err := im.fs.Open(name)
	if err != nil {
		return 0, fmt.Errorf("isoimage: %s: %s: %w", im.path, name, err)
	}
	defer src.Close()
	if fi, err := src.Stat(); err != nil || fi.IsDir() {
		return 0, fmt.Errorf("isoimage: %s: %s: %w", im.path, name, iofs.ErrInvalid)
	}
	err = replaceFile(dst, 0o644, func(tmp *os.File) error {
		n, err = io.Copy(tmp, ctxReader{ctx, src})
		if err != nil {
			return fmt.Errorf("isoimage: copy %s from %s: %w", name, im.path, err)
		}
		return nil
	})
	return n, err
}

// ctxReader ends a long copy when its context ends.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
