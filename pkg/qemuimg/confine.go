package qemuimg

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/infinibay/infinivirt/pkg/errdefs"
)

// maxChain bounds how deep CheckChain follows backing files.
const maxChain = 16

// ConfinementError says an image refers to a file outside the storage root.
type ConfinementError struct {
	Image  string // the image that refers to the file
	Kind   string // "backing file", "data file" or "image"
	Path   string // the reference as written, or the image path
	Root   string
	Reason string
}

func (e *ConfinementError) Error() string {
	if e.Kind == "image" {
		return fmt.Sprintf("image %s: %s (root %s)", e.Image, e.Reason, e.Root)
	}
	return fmt.Sprintf("%s %q of image %s: %s (root %s)", e.Kind, e.Path, e.Image, e.Reason, e.Root)
}

// Unwrap classes the error as FailedPrecondition for the API.
func (e *ConfinementError) Unwrap() error {
	return &errdefs.Error{Code: errdefs.CodeFailedPrecondition, Message: e.Error()}
}

// CheckConfined rejects an image whose backing file or data file lies
// outside root, after resolving relative names against the image's
// directory and following symlinks. A reference that cannot be resolved
// (missing file, protocol such as "nbd:") is rejected too, since nobody can
// vouch for where it leads. info.Filename must be the image's path.
func CheckConfined(info *Info, root string) error {
	realRoot, err := resolveRoot(root)
	if err != nil {
		return err
	}
	refs := []struct{ kind, path string }{
		{"backing file", info.BackingFile},
		{"backing file", info.FullBackingFile},
		{"data file", info.DataFile},
	}
	for _, r := range refs {
		if r.path == "" {
			continue
		}
		if _, err := confinedRef(info.Filename, r.kind, r.path, root, realRoot); err != nil {
			return err
		}
	}
	return nil
}

// CheckChain checks that path lies under root and walks its backing chain,
// checking every image's references before opening the next. Every
// backing file must name its format, which is then never probed. It
// returns the chain's Info, top image first.
func (t *Tool) CheckChain(ctx context.Context, path, format, root string, opts ...InfoOption) ([]*Info, error) {
	return t.CheckChainIn(ctx, path, format, []string{root}, opts...)
}

// CheckChainIn is CheckChain with several roots: path must lie under one
// of them, and so must each image of its backing chain (a disk in a VM's
// directory backed by an image of the store). Every backing file must name
// its format, which is then never probed.
func (t *Tool) CheckChainIn(ctx context.Context, path, format string, roots []string, opts ...InfoOption) ([]*Info, error) {
	if len(roots) == 0 {
		return nil, errdefs.Invalid("roots", "none given")
	}
	var chain []*Info
	for {
		root, err := rootOf(path, roots)
		if err != nil {
			return chain, err
		}
		info, err := t.Info(ctx, path, format, opts...)
		if err != nil {
			return chain, err
		}
		info.Filename = path // resolve relative references against what we opened
		chain = append(chain, info)
		// A data file belongs to its image's own root; a backing file may
		// lie under any of the roots.
		if info.DataFile != "" {
			if err := CheckConfined(&Info{Filename: path, DataFile: info.DataFile}, root); err != nil {
				return chain, err
			}
		}
		if info.FullBackingFile != "" {
			if _, err := confinedRefIn(path, info.FullBackingFile, roots); err != nil {
				return chain, err
			}
		}
		if info.BackingFile == "" {
			return chain, nil
		}
		if len(chain) == maxChain {
			return chain, &ConfinementError{Image: path, Kind: "backing file", Path: info.BackingFile, Root: root,
				Reason: fmt.Sprintf("the backing chain is deeper than %d", maxChain)}
		}
		if checkFormat("backingFormat", info.BackingFormat) != nil {
			return chain, &ConfinementError{Image: path, Kind: "backing file", Path: info.BackingFile, Root: root,
				Reason: fmt.Sprintf("backing format %q is not qcow2 or raw; formats are never probed", info.BackingFormat)}
		}
		next, err := confinedRefIn(path, info.BackingFile, roots)
		if err != nil {
			return chain, err
		}
		path, format = next, info.BackingFormat
	}
}

// rootOf is the root path lies in, after following symlinks.
func rootOf(path string, roots []string) (string, error) {
	var last error
	for _, root := range roots {
		realRoot, err := resolveRoot(root)
		if err != nil {
			return "", err
		}
		_, err = confinedRef(path, "image", path, root, realRoot)
		if err == nil {
			return root, nil
		}
		last = err
	}
	return "", last
}

// confinedRefIn resolves a backing reference that must lead under one of
// roots, both as written and after following symlinks.
func confinedRefIn(image, ref string, roots []string) (string, error) {
	var last error
	for _, root := range roots {
		realRoot, err := resolveRoot(root)
		if err != nil {
			return "", err
		}
		p, err := confinedRef(image, "backing file", ref, root, realRoot)
		if err == nil {
			return p, nil
		}
		last = err
	}
	return "", last
}

func resolveRoot(root string) (string, error) {
	if !filepath.IsAbs(root) {
		return "", errdefs.Invalid("root", "must be an absolute path, got %q", root)
	}
	resolved, err := filepath.EvalSymlinks(root)
	if err != nil {
		return "", errdefs.Invalid("root", "%v", err)
	}
	return resolved, nil
}

// confinedRef resolves ref (as written in image) and returns its real path
// if it lies under root both as written and after following symlinks.
func confinedRef(image, kind, ref, root, realRoot string) (string, error) {
	fail := func(format string, args ...any) (string, error) {
		return "", &ConfinementError{Image: image, Kind: kind, Path: ref, Root: root, Reason: fmt.Sprintf(format, args...)}
	}
	if strings.ContainsRune(ref, 0) {
		return fail("contains NUL")
	}
	// QEMU reads "proto:rest" as a protocol when the colon comes before
	// any slash (nbd:, json:, http:).
	if colon := strings.IndexByte(ref, ':'); colon >= 0 {
		if slash := strings.IndexByte(ref, '/'); slash < 0 || colon < slash {
			return fail("names a protocol, not a file")
		}
	}
	p := ref
	if !filepath.IsAbs(p) {
		dir, err := filepath.Abs(filepath.Dir(image))
		if err != nil {
			return fail("%v", err)
		}
		p = filepath.Join(dir, p)
	}
	p = filepath.Clean(p)
	if !within(filepath.Clean(root), p) {
		return fail("lies outside the root")
	}
	resolved, err := filepath.EvalSymlinks(p)
	if err != nil {
		return fail("cannot be resolved: %v", err)
	}
	if !within(realRoot, resolved) {
		return fail("leads outside the root through a symlink, to %s", resolved)
	}
	return resolved, nil
}

// within reports whether p is root or below it; both must be clean.
func within(root, p string) bool {
	if root == "/" {
		return strings.HasPrefix(p, "/")
	}
	return p == root || strings.HasPrefix(p, root+"/")
}
