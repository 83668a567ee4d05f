package qemuimg

import (
	"context"
	"regexp"
	"strings"

	"github.com/infinibay/infinivirt/pkg/errdefs"
)

// MaxSnapshotNameLen bounds a snapshot's name, which QEMU stores in each
// qcow2 image it covers.
const MaxSnapshotNameLen = 64

// A snapshot name reaches qemu-img's command line and QEMU's QMP: letters,
// digits, '-', '_' and '.', never a leading '-' (an option), and none of
// ',' '=' '/' or spaces (option and path syntax).
var snapshotNameRE = regexp.MustCompile(`^[A-Za-z0-9_.][A-Za-z0-9_.-]*$`)

// allDigitsRE matches what qemu-img would also take for a snapshot's
// numeric ID: `snapshot -a 2` may find the snapshot whose ID is 2.
var allDigitsRE = regexp.MustCompile(`^[0-9]+$`)

// CheckSnapshotName refuses a name that is not a safe snapshot name,
// naming field.
func CheckSnapshotName(field, name string) error {
	switch {
	case name == "":
		return errdefs.Invalid(field, "must not be empty")
	case len(name) > MaxSnapshotNameLen:
		return errdefs.Invalid(field, "must be at most %d characters, got %d", MaxSnapshotNameLen, len(name))
	case strings.HasPrefix(name, "-"):
		return errdefs.Invalid(field, "must not begin with '-', got %q", name)
	case !snapshotNameRE.MatchString(name):
		return errdefs.Invalid(field, "may hold only letters, digits, '-', '_' and '.' (no ',', '/', '=' or spaces), got %q", name)
	case allDigitsRE.MatchString(name):
		return errdefs.Invalid(field, "must not be all digits, which qemu-img reads as a snapshot ID, got %q", name)
	}
	return nil
}

// checkSnapshot checks an internal snapshot's image and tag. Only qcow2
// holds internal snapshots. tag is checked for the command line only: the
// project's own tags may hold characters a client's name may not.
func checkSnapshot(path, format, tag string) error {
	if err := checkImage("path", path, "format", format); err != nil {
		return err
	}
	if format != FormatQCOW2 {
		return errdefs.FailedPrecondition("%s is a %s image: only qcow2 images hold snapshots", path, format)
	}
	if tag == "" || strings.HasPrefix(tag, "-") || strings.ContainsAny(tag, ",/= \x00") {
		return errdefs.Invalid("name", "not a snapshot tag: %q", tag)
	}
	return nil
}

// SnapshotCreate takes an internal snapshot of the qcow2 image at path,
// tagged tag (snapshot -c). The image must not be open in a running QEMU.
func (t *Tool) SnapshotCreate(ctx context.Context, path, format, tag string) error {
	return t.snapshot(ctx, "-c", path, format, tag)
}

// SnapshotApply reverts the image to its snapshot tag (snapshot -a): what
// was written since is lost.
func (t *Tool) SnapshotApply(ctx context.Context, path, format, tag string) error {
	return t.snapshot(ctx, "-a", path, format, tag)
}

// SnapshotDelete deletes the image's snapshot tag (snapshot -d).
func (t *Tool) SnapshotDelete(ctx context.Context, path, format, tag string) error {
	return t.snapshot(ctx, "-d", path, format, tag)
}

// Snapshots lists the image's internal snapshots, as `snapshot -l` does,
// from info's JSON.
func (t *Tool) Snapshots(ctx context.Context, path, format string, opts ...InfoOption) ([]Snapshot, error) {
	info, err := t.Info(ctx, path, format, opts...)
	if err != nil {
		return nil, err
	}
	return info.Snapshots, nil
}

func (t *Tool) snapshot(ctx context.Context, op, path, format, tag string) error {
	if err := checkSnapshot(path, format, tag); err != nil {
		return err
	}
	// snapshot takes no -f: --image-opts names the driver, so qemu-img
	// never probes, and the path's commas are doubled to stay one value.
	opts := "driver=" + format + ",file.driver=file,file.filename=" + strings.ReplaceAll(path, ",", ",,")
	_, err := t.run(ctx, t.timeout(DefaultTimeout), "snapshot", "-q", "--image-opts", op, tag, opts)
	return err
}
