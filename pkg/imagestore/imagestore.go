// Package imagestore keeps the host's golden images: qcow2 files in one
// directory, by name, that disks are cloned from. Every image arrives by
// a qemu-img convert into a temporary name and a rename, so a failed or
// interrupted import leaves nothing under the image's name.
//
// It is one of the project's own packages, with no compatibility promise
// to outside importers; a backend uses pkg/api and pkg/agentclient.
package imagestore

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/infinibay/infinivirt/pkg/errdefs"
	"github.com/infinibay/infinivirt/pkg/qcow2"
	"github.com/infinibay/infinivirt/pkg/qemuimg"
)

// Format is the format of every image in the store.
const Format = qemuimg.FormatQCOW2

// ext is the images' file name extension.
const ext = ".qcow2"

// tempPrefix begins the names of images being written; List never shows
// them and Sweep removes those a crash left.
const tempPrefix = ".importing-"

// MaxNameLen bounds an image's name.
const MaxNameLen = 64

// A name is a file name in the store and reaches qemu-img inside a path:
// no slash, no leading dot or dash, nothing a shell or QEMU reads twice.
var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)

// CheckName refuses a name that cannot be an image's, naming field.
func CheckName(field, name string) error {
	if name == "" || len(name) > MaxNameLen || !nameRE.MatchString(name) {
		return errdefs.Invalid(field, "must be 1 to %d letters, digits, '.', '_' or '-', starting with a letter or digit, got %q", MaxNameLen, name)
	}
	return nil
}

// Store is the image directory. Files in it are owned by the agent and
// readable by all (mode 0644, in a 0711 directory), so QEMU's account can
// open an image that backs a disk, but can neither list nor change them.
type Store struct {
	Dir  string
	Tool *qemuimg.Tool
}

// Image is one image of the store.
type Image struct {
	Name             string
	Path             string
	VirtualSizeBytes int64
	AllocatedBytes   int64
	CreatedAt        time.Time
}

// Path is where the image named name is kept.
func (s *Store) Path(name string) string { return filepath.Join(s.Dir, name+ext) }

// Init makes the directory and removes what interrupted imports left.
func (s *Store) Init() error {
	if err := os.MkdirAll(s.Dir, 0o711); err != nil {
		return err
	}
	matches, err := filepath.Glob(filepath.Join(s.Dir, tempPrefix+"*"))
	if err != nil {
		return err
	}
	var errs []error
	for _, m := range matches {
		errs = append(errs, os.Remove(m))
	}
	return errors.Join(errs...)
}

// Exists reports whether an image named name is in the store.
func (s *Store) Exists(name string) bool {
	fi, err := os.Lstat(s.Path(name))
	return err == nil && fi.Mode().IsRegular()
}

// Get reads one image's metadata; a missing one is NotFound.
func (s *Store) Get(ctx context.Context, name string) (Image, error) {
	if err := CheckName("name", name); err != nil {
		return Image{}, err
	}
	p := s.Path(name)
	fi, err := os.Lstat(p)
	if errors.Is(err, os.ErrNotExist) {
		return Image{}, errdefs.NotFound("image %s does not exist", name)
	}
	if err != nil {
		return Image{}, err
	}
	if !fi.Mode().IsRegular() {
		return Image{}, fmt.Errorf("image %s is not a regular file", p)
	}
	// The store's own convert wrote the image, so its header is read
	// directly: a create asks for an image's size, and a qemu-img run
	// would cost more than the rest of a linked clone.
	hdr, err := qemuimg.ReadHeader(p, Format)
	if err != nil {
		return Image{}, err
	}
	return Image{Name: name, Path: p, VirtualSizeBytes: hdr.VirtualSize, AllocatedBytes: allocated(fi),
		CreatedAt: fi.ModTime().UTC()}, nil
}

// allocated is what the file takes on the host's disk, as qemu-img's
// actual-size counts it.
func allocated(fi os.FileInfo) int64 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return st.Blocks * 512
	}
	return fi.Size()
}

// List reads every image, by name.
func (s *Store) List(ctx context.Context) ([]Image, error) {
	entries, err := os.ReadDir(s.Dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []Image
	for _, e := range entries {
		name, ok := strings.CutSuffix(e.Name(), ext)
		if !ok || !e.Type().IsRegular() || CheckName("name", name) != nil {
			continue
		}
		img, err := s.Get(ctx, name)
		if errors.Is(err, os.ErrNotExist) || errors.Is(err, &errdefs.Error{Code: errdefs.CodeNotFound}) {
			continue // deleted meanwhile
		}
		if err != nil {
			return nil, err
		}
		out = append(out, img)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// Add converts src (of srcFormat, any of qemuimg.ImportFormats) into the
// store as name, flattened, reporting qemu-img's progress. An image of
// that name is never overwritten (AlreadyExists), and a failure leaves
// nothing behind.
func (s *Store) Add(ctx context.Context, name, src, srcFormat string, progress func(percent float64)) error {
	if err := CheckName("name", name); err != nil {
		return err
	}
	if s.Exists(name) {
		return errdefs.AlreadyExists("name", "image %s already exists", name)
	}
	suffix := make([]byte, 6)
	if _, err := rand.Read(suffix); err != nil {
		return err
	}
	tmp := filepath.Join(s.Dir, tempPrefix+name+"-"+hex.EncodeToString(suffix)+ext)
	if err := s.Tool.ConvertFrom(ctx, src, srcFormat, tmp, Format, progress); err != nil {
		return err
	}
	// Readable by QEMU's account, which opens it read-only as a backing file.
	if err := os.Chmod(tmp, 0o644); err != nil {
		return errors.Join(err, os.Remove(tmp))
	}
	// A link, unlike a rename, never replaces a file that appeared meanwhile.
	if err := os.Link(tmp, s.Path(name)); err != nil {
		rmErr := os.Remove(tmp)
		if errors.Is(err, os.ErrExist) {
			return errors.Join(errdefs.AlreadyExists("name", "image %s already exists", name), rmErr)
		}
		return errors.Join(err, rmErr)
	}
	return os.Remove(tmp)
}

// Delete removes the image named name; a missing one is NotFound. The
// caller has made sure no disk is backed by it.
func (s *Store) Delete(name string) error {
	if err := CheckName("name", name); err != nil {
		return err
	}
	err := os.Remove(s.Path(name))
	if errors.Is(err, os.ErrNotExist) {
		return errdefs.NotFound("image %s does not exist", name)
	}
	return err
}

// LinkedClone makes a thin qcow2 overlay at dst backed by the image name,
// of sizeBytes (at least the image's size). It writes the file itself,
// with no qemu-img run, and refuses to overwrite dst.
func (s *Store) LinkedClone(name, dst string, sizeBytes int64) error {
	if !s.Exists(name) {
		return errdefs.NotFound("image %s does not exist", name)
	}
	return qcow2.Create(dst, qcow2.Image{SizeBytes: sizeBytes, BackingFile: s.Path(name), BackingFormat: Format})
}

// FullClone copies the image name into a new image dst of dstFormat, then
// grows it to sizeBytes if that is larger than the image.
func (s *Store) FullClone(ctx context.Context, name, dst, dstFormat string, sizeBytes int64) error {
	img, err := s.Get(ctx, name)
	if err != nil {
		return err
	}
	if err := s.Tool.Convert(ctx, img.Path, Format, dst, dstFormat); err != nil {
		return err
	}
	if sizeBytes > img.VirtualSizeBytes {
		if err := s.Tool.Resize(ctx, dst, dstFormat, sizeBytes, false); err != nil {
			return errors.Join(err, os.Remove(dst))
		}
	}
	return nil
}
