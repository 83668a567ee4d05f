package unattended

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/infinibay/infinivirt/pkg/errdefs"
	"github.com/infinibay/infinivirt/pkg/isoimage"
)

// UbuntuKernelArgs is the kernel command line for a direct boot of the
// Ubuntu installer's kernel and initrd. "autoinstall" skips the installer's
// confirmation, "ds=nocloud" makes cloud-init look for the CIDATA answer
// ISO, and "---" ends the installer's arguments, as Ubuntu's own boot menu
// does. The OS ISO stays attached as a CD-ROM: casper finds its live system
// there by itself. Add console=ttyS0 to follow the install on a serial port.
const UbuntuKernelArgs = "autoinstall ds=nocloud ---"

// Where Ubuntu live ISOs keep the installer's kernel and initrd, newest
// layout first: casper/initrd since 20.10, initrd.lz and .gz before.
var (
	ubuntuKernels = []string{"casper/vmlinuz"}
	ubuntuInitrds = []string{"casper/initrd", "casper/initrd.lz", "casper/initrd.gz", "casper/initrd.img"}
)

// UnknownLayoutError reports an OS ISO without the files a direct boot needs.
// It unwraps to an *errdefs.Error of class InvalidArgument for field isoPath.
type UnknownLayoutError struct {
	ISO     string
	Missing []string // candidates tried for the missing file, none found
	TopDirs []string // what the ISO's root holds, to tell which OS it is
}

func (e *UnknownLayoutError) Error() string {
	return fmt.Sprintf("unattended: %s is not an Ubuntu live ISO this version knows: none of %s found (root holds %s)",
		e.ISO, strings.Join(e.Missing, ", "), strings.Join(e.TopDirs, ", "))
}

func (e *UnknownLayoutError) Unwrap() error {
	return errdefs.Invalid("isoPath", "unknown Ubuntu ISO layout: none of %s found", strings.Join(e.Missing, ", "))
}

// ExtractUbuntuBoot copies the installer's kernel and initrd out of the
// Ubuntu ISO at isoPath into dstDir (as "vmlinuz" and "initrd") and returns
// their paths; boot them with UbuntuKernelArgs. A missing ISO is an
// api NotFound error, a file that is no ISO an InvalidArgument, an ISO
// without the casper files an *UnknownLayoutError. Each file is written
// whole or not at all.
func ExtractUbuntuBoot(ctx context.Context, isoPath, dstDir string) (kernel, initrd string, err error) {
	im, err := isoimage.Open(isoPath)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return "", "", fmt.Errorf("%w: %w", errdefs.NotFound("OS ISO %s does not exist", isoPath), err)
	case errors.Is(err, isoimage.ErrNotISO):
		return "", "", fmt.Errorf("%w: %w", errdefs.Invalid("isoPath", "%s is not an ISO 9660 image", isoPath), err)
	case err != nil:
		return "", "", err
	}
	defer im.Close()

	src := map[string]string{}
	for _, want := range []struct {
		name       string
		candidates []string
	}{{"vmlinuz", ubuntuKernels}, {"initrd", ubuntuInitrds}} {
		for _, c := range want.candidates {
			if im.Exists(c) {
				src[want.name] = c
				break
			}
		}
		if src[want.name] == "" {
			top, _ := im.Names(".")
			return "", "", &UnknownLayoutError{ISO: isoPath, Missing: want.candidates, TopDirs: top}
		}
	}
	kernel = filepath.Join(dstDir, "vmlinuz")
	initrd = filepath.Join(dstDir, "initrd")
	// discard removes what was extracted so far; a file left behind is
	// added to err.
	discard := func(err error) error {
		for _, p := range []string{kernel, initrd} {
			if rerr := os.Remove(p); rerr != nil && !errors.Is(rerr, os.ErrNotExist) {
				err = errors.Join(err, rerr)
			}
		}
		return err
	}
	for name, dst := range map[string]string{"vmlinuz": kernel, "initrd": initrd} {
		n, err := im.CopyFile(ctx, src[name], dst)
		if err != nil {
			return "", "", discard(fmt.Errorf("unattended: extract %s from %s: %w", src[name], isoPath, err))
		}
		if n == 0 {
			return "", "", discard(&UnknownLayoutError{ISO: isoPath, Missing: []string{src[name] + " (empty)"}})
		}
	}
	return kernel, initrd, nil
}
