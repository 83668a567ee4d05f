package qemuimg

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"

	"github.com/infinibay/infinivirt/pkg/errdefs"
)

// Formats an image can be imported from, besides qcow2 and raw.
const (
	FormatVMDK = "vmdk"
	FormatVHDX = "vhdx"
)

// ImportFormats are the formats ConvertFrom reads.
var ImportFormats = []string{FormatRaw, FormatQCOW2, FormatVMDK, FormatVHDX}

// CheckImportFormat refuses a format ConvertFrom does not read.
func CheckImportFormat(field, f string) error {
	for _, ok := range ImportFormats {
		if f == ok {
			return nil
		}
	}
	return errdefs.Invalid(field, "must be raw, qcow2, vmdk or vhdx, got %q", f)
}

// SniffFormat names the format an image's header says it has: qcow2,
// vmdk (sparse or a monolithic descriptor) or vhdx by their magic, raw
// for anything else. The caller passes what it found to qemu-img
// explicitly, which then never probes.
func SniffFormat(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	buf := make([]byte, 64)
	n, err := io.ReadFull(f, buf)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		return "", err
	}
	buf = buf[:n]
	switch {
	case bytes.HasPrefix(buf, []byte("QFI\xfb")):
		return FormatQCOW2, nil
	case bytes.HasPrefix(buf, []byte("KDMV")), bytes.HasPrefix(buf, []byte("# Disk DescriptorFile")):
		return FormatVMDK, nil
	case bytes.HasPrefix(buf, []byte("vhdxfile")):
		return FormatVHDX, nil
	}
	return FormatRaw, nil
}

// InspectSource reads an image to import, in any of ImportFormats, and
// refuses one that refers to another file: a backing file, a qcow2 data
// file, or a VMDK extent other than itself. Only a self-contained image
// is converted, so an import never reads a file its caller did not name.
func (t *Tool) InspectSource(ctx context.Context, path, format string) (*Info, error) {
	if err := checkPath("sourcePath", path); err != nil {
		return nil, err
	}
	if err := CheckImportFormat("format", format); err != nil {
		return nil, err
	}
	out, err := t.run(ctx, t.timeout(DefaultTimeout), "info", "--output=json", "-f", format, path)
	if err != nil {
		return nil, errdefs.Invalid("sourcePath", "%s is not a readable %s image: %v", path, format, err)
	}
	info, err := ParseInfo(out)
	if err != nil {
		return nil, errdefs.Invalid("sourcePath", "%v", err)
	}
	switch {
	case info.BackingFile != "":
		return nil, errdefs.Invalid("sourcePath", "%s has a backing file (%s); import a flattened image", path, info.BackingFile)
	case info.DataFile != "":
		return nil, errdefs.Invalid("sourcePath", "%s has an external data file (%s); import a self-contained image", path, info.DataFile)
	case info.Corrupt:
		return nil, errdefs.Invalid("sourcePath", "%s is marked corrupt", path)
	case info.Encrypted:
		return nil, errdefs.Invalid("sourcePath", "%s is encrypted", path)
	}
	var extents struct {
		FormatSpecific struct {
			Data struct {
				Extents []struct {
					Filename string `json:"filename"`
				} `json:"extents"`
			} `json:"data"`
		} `json:"format-specific"`
	}
	if err := json.Unmarshal(out, &extents); err != nil {
		return nil, fmt.Errorf("qemu-img info: %w", err)
	}
	self, err := filepath.EvalSymlinks(path)
	if err != nil {
		return nil, errdefs.Invalid("sourcePath", "%v", err)
	}
	for _, e := range extents.FormatSpecific.Data.Extents {
		if e.Filename == path || e.Filename == self {
			continue
		}
		return nil, errdefs.Invalid("sourcePath", "%s keeps its data in another file (%s); import a monolithic image", path, e.Filename)
	}
	info.Filename = path
	return info, nil
}

// progressRE matches what `qemu-img convert -p` prints: "    (12.34/100%)".
var progressRE = regexp.MustCompile(`\((\d+(?:\.\d+)?)/100%\)`)

// ConvertFrom copies src, in any of ImportFormats, into a new image dst
// of dstFormat, flattening any backing chain, and calls progress (if not
// nil) with the percentage done as qemu-img reports it. It refuses to
// overwrite dst and removes it again on failure.
func (t *Tool) ConvertFrom(ctx context.Context, src, srcFormat, dst, dstFormat string, progress func(percent float64)) error {
	if err := checkPath("src", src); err != nil {
		return err
	}
	if err := CheckImportFormat("srcFormat", srcFormat); err != nil {
		return err
	}
	if err := checkImage("dst", dst, "dstFormat", dstFormat); err != nil {
		return err
	}
	if src == dst {
		return errdefs.Invalid("dst", "must differ from src")
	}
	return t.createExclusive(dst, func() error {
		return t.runProgress(ctx, progress, "convert", "-p", "-f", srcFormat, "-O", dstFormat, src, dst)
	})
}

// runProgress runs qemu-img with a deadline, reading its stdout for
// progress reports as it goes.
func (t *Tool) runProgress(ctx context.Context, progress func(float64), args ...string) error {
	ctx, cancel := context.WithTimeout(ctx, t.timeout(DefaultConvertTimeout))
	defer cancel()
	bin := t.Binary
	if bin == "" {
		bin = DefaultBinary
	}
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = []string{"LC_ALL=C", "PATH=/usr/sbin:/usr/bin:/sbin:/bin"}
	stderr := &limitedBuffer{max: maxStderr}
	cmd.Stderr = stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("qemu-img %s: %w", args[0], err)
	}
	sc := bufio.NewScanner(out)
	sc.Split(splitProgress)
	for sc.Scan() {
		if m := progressRE.FindSubmatch(sc.Bytes()); m != nil && progress != nil {
			if p, err := strconv.ParseFloat(string(m[1]), 64); err == nil {
				progress(p)
			}
		}
	}
	_, _ = io.Copy(io.Discard, out) // a line too long for the scanner: drain the rest
	if err := cmd.Wait(); err != nil {
		ee := &ExitError{Args: args, ExitCode: -1, Stderr: stderr.String(), Err: err}
		var xe *exec.ExitError
		switch {
		case ctx.Err() != nil:
			ee.Err = ctx.Err()
		case errors.As(err, &xe):
			ee.ExitCode = xe.ExitCode()
		}
		return ee
	}
	return nil
}

// splitProgress splits qemu-img's progress output, which ends its reports
// with '\r' rather than '\n'.
func splitProgress(data []byte, atEOF bool) (int, []byte, error) {
	if i := bytes.IndexAny(data, "\r\n"); i >= 0 {
		return i + 1, data[:i], nil
	}
	if atEOF && len(data) > 0 {
		return len(data), data, nil
	}
	return 0, nil, nil
}
