// Package qemuimg is the one typed wrapper around the qemu-img binary:
// create, inspect, resize and convert disk images. Formats are always
// explicit, so qemu-img never probes an image, and paths must be absolute,
// so a path can never read as an option or a protocol ("nbd:", "json:").
//
// It is one of the project's own packages, with no compatibility promise
// to outside importers; a backend uses pkg/api and pkg/agentclient.
package qemuimg

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/infinibay/infinivirt/pkg/errdefs"
)

// DefaultBinary is qemu-img, looked up in PATH.
const DefaultBinary = "qemu-img"

// Default deadlines when Tool.Timeout is zero. Metadata operations take
// milliseconds; a convert copies the whole image.
const (
	DefaultTimeout        = time.Minute
	DefaultConvertTimeout = time.Hour
)

// Image formats this package creates and reads.
const (
	FormatQCOW2 = "qcow2"
	FormatRaw   = "raw"
)

// Bounds on what qemu-img may print: the error text kept in an ExitError,
// and the output read (info's JSON, which a hostile image could inflate
// with snapshots).
const (
	maxStderr = 64 << 10
	maxStdout = 16 << 20
)

// Tool runs qemu-img. The zero value is ready to use.
type Tool struct {
	Binary  string        // empty means DefaultBinary
	Timeout time.Duration // per call; zero means DefaultTimeout (DefaultConvertTimeout for Convert)
}

// ExitError is a qemu-img run that failed, with what qemu-img said.
type ExitError struct {
	Args     []string // arguments after the binary
	ExitCode int      // -1 when qemu-img was killed, e.g. at the deadline
	Stderr   string
	Err      error // the cause: *exec.ExitError or the context's error
}

func (e *ExitError) Error() string {
	msg := strings.TrimSpace(e.Stderr)
	if msg == "" {
		msg = e.Err.Error()
	}
	verb := ""
	if len(e.Args) > 0 {
		verb = " " + e.Args[0]
	}
	return fmt.Sprintf("qemu-img%s: exit code %d: %s", verb, e.ExitCode, msg)
}

func (e *ExitError) Unwrap() error { return e.Err }

// Create makes a thin (not preallocated) image of sizeBytes, a multiple of
// 512. It refuses to overwrite: an existing path is an AlreadyExists error.
func (t *Tool) Create(ctx context.Context, path, format string, sizeBytes int64) error {
	if err := checkImage("path", path, "format", format); err != nil {
		return err
	}
	if err := checkSize(sizeBytes); err != nil {
		return err
	}
	return t.createExclusive(path, func() error {
		_, err := t.run(ctx, t.timeout(DefaultTimeout), "create", "-q", "-f", format, "-o", "preallocation=off",
			path, strconv.FormatInt(sizeBytes, 10))
		return err
	})
}

// InfoOption changes how Info opens the image.
type InfoOption func(*[]string)

// ForceShare (-U) reads an image that a running QEMU holds locked. The
// answer may be slightly stale.
func ForceShare() InfoOption {
	return func(args *[]string) { *args = append(*args, "-U") }
}

// Info reads the image's metadata. It opens neither backing file nor data
// file, so it is safe on an image that points outside the storage root.
func (t *Tool) Info(ctx context.Context, path, format string, opts ...InfoOption) (*Info, error) {
	if err := checkImage("path", path, "format", format); err != nil {
		return nil, err
	}
	args := []string{"info", "--output=json", "-f", format}
	for _, o := range opts {
		o(&args)
	}
	out, err := t.run(ctx, t.timeout(DefaultTimeout), append(args, path)...)
	if err != nil {
		return nil, err
	}
	return ParseInfo(out)
}

// Resize sets the image's virtual size. Shrinking loses the data past the
// new end, so it needs allowShrink.
func (t *Tool) Resize(ctx context.Context, path, format string, sizeBytes int64, allowShrink bool) error {
	if err := checkImage("path", path, "format", format); err != nil {
		return err
	}
	if err := checkSize(sizeBytes); err != nil {
		return err
	}
	args := []string{"resize", "-q", "-f", format}
	if allowShrink {
		args = append(args, "--shrink")
	}
	_, err := t.run(ctx, t.timeout(DefaultTimeout), append(args, path, strconv.FormatInt(sizeBytes, 10))...)
	return err
}

// Convert copies src into a new image dst, flattening any backing chain.
// It refuses to overwrite dst.
func (t *Tool) Convert(ctx context.Context, src, srcFormat, dst, dstFormat string) error {
	if err := checkImage("src", src, "srcFormat", srcFormat); err != nil {
		return err
	}
	if err := checkImage("dst", dst, "dstFormat", dstFormat); err != nil {
		return err
	}
	if src == dst {
		return errdefs.Invalid("dst", "must differ from src")
	}
	return t.createExclusive(dst, func() error {
		_, err := t.run(ctx, t.timeout(DefaultConvertTimeout), "convert", "-q", "-f", srcFormat, "-O", dstFormat, src, dst)
		return err
	})
}

// createExclusive claims path with O_EXCL before fill writes it, so two
// callers cannot both create it, and removes it again if fill fails.
func (t *Tool) createExclusive(path string, fill func() error) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, os.ErrExist) {
		return errdefs.AlreadyExists("path", "%s already exists; refusing to overwrite it", path)
	}
	if err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return errors.Join(err, os.Remove(path))
	}
	if err := fill(); err != nil {
		return errors.Join(err, os.Remove(path))
	}
	return nil
}

func (t *Tool) timeout(def time.Duration) time.Duration {
	if t.Timeout > 0 {
		return t.Timeout
	}
	return def
}

func (t *Tool) run(ctx context.Context, timeout time.Duration, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	bin := t.Binary
	if bin == "" {
		bin = DefaultBinary
	}
	cmd := exec.CommandContext(ctx, bin, args...)
	// A clean environment: stable English messages, nothing inherited
	// (NOTIFY_SOCKET, proxies) that qemu-img has no business seeing.
	cmd.Env = []string{"LC_ALL=C", "PATH=/usr/sbin:/usr/bin:/sbin:/bin"}
	stdout := &limitedBuffer{max: maxStdout}
	stderr := &limitedBuffer{max: maxStderr}
	cmd.Stdout, cmd.Stderr = stdout, stderr
	if err := cmd.Run(); err != nil {
		ee := &ExitError{Args: args, ExitCode: -1, Stderr: stderr.String(), Err: err}
		var xe *exec.ExitError
		switch {
		case ctx.Err() != nil:
			ee.Err = ctx.Err()
		case errors.As(err, &xe):
			ee.ExitCode = xe.ExitCode()
		default:
			return nil, fmt.Errorf("qemu-img %s: %w", args[0], err) // did not start
		}
		return nil, ee
	}
	if stdout.cut {
		return nil, fmt.Errorf("qemu-img %s: more than %d bytes of output", args[0], maxStdout)
	}
	return stdout.Bytes(), nil
}

// limitedBuffer keeps the first max bytes written to it and notes a cut.
// The buffer is a field, not embedded: an embedded bytes.Buffer would lend
// it ReadFrom, which io.Copy (and so os/exec) prefers to Write, unbounded.
type limitedBuffer struct {
	buf bytes.Buffer
	max int
	cut bool
}

func (b *limitedBuffer) Write(p []byte) (int, error) {
	room := max(b.max-b.buf.Len(), 0)
	b.buf.Write(p[:min(room, len(p))])
	b.cut = b.cut || len(p) > room
	return len(p), nil
}

func (b *limitedBuffer) Bytes() []byte  { return b.buf.Bytes() }
func (b *limitedBuffer) String() string { return b.buf.String() }

// checkImage checks an image's path and format, naming the field at fault.
func checkImage(pathField, path, formatField, format string) error {
	if err := checkPath(pathField, path); err != nil {
		return err
	}
	return checkFormat(formatField, format)
}

func checkPath(field, p string) error {
	if !filepath.IsAbs(p) {
		return errdefs.Invalid(field, "must be an absolute path, got %q", p)
	}
	if strings.ContainsRune(p, 0) {
		return errdefs.Invalid(field, "must not contain NUL")
	}
	return nil
}

func checkFormat(field, f string) error {
	if f != FormatQCOW2 && f != FormatRaw {
		return errdefs.Invalid(field, "must be %q or %q (never probed), got %q", FormatQCOW2, FormatRaw, f)
	}
	return nil
}

func checkSize(n int64) error {
	if n <= 0 || n%512 != 0 {
		return errdefs.Invalid("sizeBytes", "must be a positive multiple of 512, got %d", n)
	}
	return nil
}
