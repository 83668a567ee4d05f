// Package isoimage writes small ISO 9660 images (Rock Ridge + Joliet) such as
// answer media for unattended installs, and reads files and names back from
// ISO images, including multi-GB installer ISOs.
//
// It is one of the project's own packages, with no compatibility promise
// to outside importers; a backend uses pkg/api and pkg/agentclient.
package isoimage

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/diskfs/go-diskfs/backend/file"
	"github.com/diskfs/go-diskfs/filesystem/iso9660"
)

// File is one file to put on an image.
type File struct {
	// Path is slash-separated and relative to the image root, for example
	// "user-data" or "infinivirt/01-setup.ps1". Parent directories are created.
	Path string
	Data []byte
}

// Options describe the image as a whole.
type Options struct {
	// Label is the volume identifier: 1 to 32 characters of A-Z, 0-9 and _,
	// as ISO 9660 allows. It is also the label blkid and cloud-init see.
	Label string
	// NoJoliet leaves out the Joliet tree. Joliet images must keep every file
	// at the root: go-diskfs v1.9.4 points Joliet subdirectory records at the
	// primary tree's extents, so Windows would see garbled names below the
	// root. Rock Ridge subdirectories are fine.
	NoJoliet bool
}

// Mode is the permission of a written image: answer media can hold password
// hashes, so only the owner reads them.
const Mode os.FileMode = 0o600

var labelRE = regexp.MustCompile(`^[A-Z0-9_]{1,32}$`)

// maxNameLen keeps every name within Joliet's 64 UCS-2 characters.
const maxNameLen = 64

// Write creates the image at dst with Rock Ridge and, unless opts.NoJoliet,
// Joliet names. It writes a temp file beside dst and renames it into place,
// so dst either appears whole or not at all; on failure nothing is left
// behind.
func Write(ctx context.Context, dst string, opts Options, files []File) (err error) {
	if !labelRE.MatchString(opts.Label) {
		return fmt.Errorf("isoimage: label %q: want 1-32 characters of A-Z, 0-9 and _", opts.Label)
	}
	if err := checkFiles(files, !opts.NoJoliet); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("isoimage: %w", err)
	}
	dir := filepath.Dir(dst)
	work, err := os.MkdirTemp(dir, ".isoimage-work-*")
	if err != nil {
		return fmt.Errorf("isoimage: %w", err)
	}
	defer func() { err = errors.Join(err, os.RemoveAll(work)) }()
	// The workspace becomes the image root; MkdirTemp made it 0700.
	if err := os.Chmod(work, 0o755); err != nil {
		return fmt.Errorf("isoimage: %w", err)
	}
	for _, f := range files {
		p := filepath.Join(work, filepath.FromSlash(f.Path))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return fmt.Errorf("isoimage: %w", err)
		}
		if err := os.WriteFile(p, f.Data, 0o644); err != nil {
			return fmt.Errorf("isoimage: %w", err)
		}
	}
	return replaceFile(dst, Mode, func(tmp *os.File) error {
		fs, err := iso9660.Create(file.New(tmp, false), 0, 0, 2048, work)
		if err != nil {
			return fmt.Errorf("isoimage: create: %w", err)
		}
		if err := fs.Finalize(iso9660.FinalizeOptions{RockRidge: true, Joliet: !opts.NoJoliet, VolumeIdentifier: opts.Label}); err != nil {
			return fmt.Errorf("isoimage: finalize %s: %w", dst, err)
		}
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("isoimage: %w", err)
		}
		return nil
	})
}

// replaceFile writes dst through a temp file beside it, created with mode:
// fill writes the content, then the file is synced and renamed into place
// and the directory is synced. On any error the temp file is removed and
// dst is left as it was.
func replaceFile(dst string, mode os.FileMode, fill func(*os.File) error) (err error) {
	dir := filepath.Dir(dst)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(dst)+".tmp-*")
	if err != nil {
		return fmt.Errorf("isoimage: %w", err)
	}
	defer func() {
		if err != nil {
			tmp.Close()
			err = errors.Join(err, os.Remove(tmp.Name()))
		}
	}()
	if err = tmp.Chmod(mode); err != nil {
		return fmt.Errorf("isoimage: %w", err)
	}
	if err = fill(tmp); err != nil {
		return err
	}
	if err = tmp.Sync(); err != nil {
		return fmt.Errorf("isoimage: %w", err)
	}
	if err = tmp.Close(); err != nil {
		return fmt.Errorf("isoimage: %w", err)
	}
	if err = os.Rename(tmp.Name(), dst); err != nil {
		return fmt.Errorf("isoimage: %w", err)
	}
	return syncDir(dir)
}

func checkFiles(files []File, joliet bool) error {
	if len(files) == 0 {
		return errors.New("isoimage: no files")
	}
	seen := map[string]bool{}
	for _, f := range files {
		p := f.Path
		if p == "" || path.IsAbs(p) || path.Clean(p) != p || strings.HasPrefix(p, "../") || p == ".." || p == "." {
			return fmt.Errorf("isoimage: path %q: want a clean relative path", p)
		}
		if joliet && strings.Contains(p, "/") {
			return fmt.Errorf("isoimage: path %q: a Joliet image keeps its files at the root (see Options.NoJoliet)", p)
		}
		for _, part := range strings.Split(p, "/") {
			if len([]rune(part)) > maxNameLen {
				return fmt.Errorf("isoimage: path %q: name longer than %d characters", p, maxNameLen)
			}
			if strings.HasPrefix(part, ".") {
				// go-diskfs v1.9.4 writes such names with an empty ISO 9660
				// name, which breaks lookups below them.
				return fmt.Errorf("isoimage: path %q: names starting with a dot are not supported", p)
			}
			if strings.ContainsAny(part, "\x00\\") {
				return fmt.Errorf("isoimage: path %q: NUL or backslash in a name", p)
			}
		}
		key := strings.ToLower(p) // Joliet readers on Windows compare names without case
		if seen[key] {
			return fmt.Errorf("isoimage: path %q given twice", p)
		}
		seen[key] = true
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("isoimage: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("isoimage: sync %s: %w", dir, err)
	}
	return nil
}
