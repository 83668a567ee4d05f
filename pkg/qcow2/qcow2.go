// Package qcow2 writes new, empty qcow2 images without running qemu-img:
// the same bytes `qemu-img create -f qcow2` writes with its defaults
// (version 3, 64 KiB clusters, 16-bit refcounts, zlib, no preallocation),
// optionally naming a backing file and its format. A linked clone or a new
// thin disk then costs a few file writes instead of a process start.
//
// The layout (QEMU's docs/interop/qcow2.txt): cluster 0 is the header, its
// extensions and the backing file's name; cluster 1 the refcount table,
// whose one entry points at the refcount block in cluster 2; the L1 table,
// all zeros as nothing is allocated, starts at cluster 3. The file ends
// where the L1 table does.
//
// It is one of the project's own packages, with no compatibility promise
// to outside importers; a backend uses pkg/api and pkg/agentclient.
package qcow2

import (
	"encoding/binary"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/infinibay/infinivirt/pkg/atomicfile"
	"github.com/infinibay/infinivirt/pkg/errdefs"
)

// Geometry of the images this package writes.
const (
	clusterBits = 16
	// ClusterSize is the images' cluster size, qemu-img's default.
	ClusterSize = 1 << clusterBits
	// l2Span is the guest bytes one L1 entry maps: an L2 table of
	// ClusterSize/8 entries, a cluster each.
	l2Span = ClusterSize * (ClusterSize / 8)
	// maxL1Entries is QEMU's limit on the L1 table (32 MiB).
	maxL1Entries = 32 << 20 / 8
	// MaxSize is the largest virtual size QEMU opens at this cluster
	// size (2 PiB).
	MaxSize = maxL1Entries * l2Span
	// sectorSize is what qemu-img rounds a size up to.
	sectorSize = 512
	// refcountOrder 4 is 16-bit refcounts, so one refcount block counts
	// ClusterSize/2 clusters: far more than the metadata ever takes.
	refcountOrder = 4
	// MaxBackingFileLen is the longest backing file name QEMU reads.
	MaxBackingFileLen = 1023
)

// Header fields and extensions, as QEMU writes them.
const (
	magic            = 0x514649fb // "QFI\xfb"
	version          = 3
	headerLen        = 112 // the v3 header with its compression type, padded to 8
	extBackingFormat = 0xe2792aca
	extFeatureNames  = 0x6803f857
	featureNameLen   = 46
)

// Backing formats an image may name.
const (
	FormatQCOW2 = "qcow2"
	FormatRaw   = "raw"
)

// featureKind is a feature name table entry's type.
type featureKind byte

const (
	incompatible featureKind = 0
	compatible   featureKind = 1
	autoclear    featureKind = 2
)

// features are the names QEMU puts in its feature name table, in its
// order, so that a tool reading the image can name a bit it finds set.
var features = []struct {
	kind featureKind
	bit  byte
	name string
}{
	{incompatible, 0, "dirty bit"},
	{incompatible, 1, "corrupt bit"},
	{incompatible, 2, "external data file"},
	{incompatible, 3, "compression type"},
	{incompatible, 4, "extended L2 entries"},
	{compatible, 0, "lazy refcounts"},
	{autoclear, 0, "bitmaps"},
	{autoclear, 1, "raw external data"},
}

// Image is what Create writes.
type Image struct {
	// SizeBytes is the virtual size, 1 to MaxSize; like qemu-img, Create
	// rounds it up to a multiple of 512.
	SizeBytes int64
	// BackingFile, if set, is the absolute path of the image under this
	// one, written as given: QEMU reads it only when it opens the image.
	BackingFile string
	// BackingFormat is BackingFile's format, qcow2 or raw, so that QEMU
	// never probes it. It is required with BackingFile.
	BackingFormat string
}

// Check refuses an image Create cannot write, naming the field at fault
// (sizeBytes, backingFile, backingFormat).
func (im Image) Check() error {
	if im.SizeBytes <= 0 || im.SizeBytes > MaxSize {
		return errdefs.Invalid("sizeBytes", "must be 1 to %d bytes (2 PiB) for a qcow2 image with %d KiB clusters, got %d",
			int64(MaxSize), ClusterSize>>10, im.SizeBytes)
	}
	if im.BackingFile == "" {
		if im.BackingFormat != "" {
			return errdefs.Invalid("backingFormat", "must be empty without a backing file, got %q", im.BackingFormat)
		}
		return nil
	}
	switch {
	case !filepath.IsAbs(im.BackingFile):
		return errdefs.Invalid("backingFile", "must be an absolute path, got %q", im.BackingFile)
	case strings.ContainsRune(im.BackingFile, 0):
		return errdefs.Invalid("backingFile", "must not contain NUL")
	case len(im.BackingFile) > MaxBackingFileLen:
		return errdefs.Invalid("backingFile", "must be at most %d bytes, got %d", MaxBackingFileLen, len(im.BackingFile))
	}
	if im.BackingFormat != FormatQCOW2 && im.BackingFormat != FormatRaw {
		return errdefs.Invalid("backingFormat", "must be %q or %q (never probed), got %q", FormatQCOW2, FormatRaw, im.BackingFormat)
	}
	return nil
}

// Create writes im as a new file at path with mode 0600. It refuses to
// overwrite (an existing path is AlreadyExists of path) and leaves no
// file behind when it fails; a reader sees no file or the whole image.
func Create(path string, im Image) error {
	if err := im.Check(); err != nil {
		return err
	}
	if !filepath.IsAbs(path) {
		return errdefs.Invalid("path", "must be an absolute path, got %q", path)
	}
	l := im.layout()
	err := atomicfile.Create(path, 0o600, func(f *os.File) error {
		// Only what is not zero is written: the rest, the L1 table
		// included, is a hole, which reads as zeros.
		for _, r := range l.regions {
			if _, err := f.WriteAt(r.data, r.offset); err != nil {
				return err
			}
		}
		return f.Truncate(l.size)
	})
	if errors.Is(err, fs.ErrExist) {
		return errdefs.AlreadyExists("path", "%s already exists; refusing to overwrite it", path)
	}
	return err
}

// region is bytes at an offset of the file.
type region struct {
	offset int64
	data   []byte
}

// layout is the file: the bytes that are not zero, and its length.
type layout struct {
	regions []region
	size    int64
}

func (im Image) layout() layout {
	be := binary.BigEndian
	size := (im.SizeBytes + sectorSize - 1) / sectorSize * sectorSize
	l1Entries := (size + l2Span - 1) / l2Span
	l1Offset := int64(3 * ClusterSize)
	l1Clusters := (l1Entries*8 + ClusterSize - 1) / ClusterSize

	h := make([]byte, headerLen, ClusterSize)
	be.PutUint32(h[0:], magic)
	be.PutUint32(h[4:], version)
	be.PutUint32(h[20:], clusterBits)
	be.PutUint64(h[24:], uint64(size))
	be.PutUint32(h[36:], uint32(l1Entries))
	be.PutUint64(h[40:], uint64(l1Offset))
	be.PutUint64(h[48:], ClusterSize) // refcount table
	be.PutUint32(h[56:], 1)           // of one cluster
	be.PutUint32(h[96:], refcountOrder)
	be.PutUint32(h[100:], headerLen)
	// Byte 104, the compression type, is 0: zlib.

	if im.BackingFile != "" {
		h = appendExtension(h, extBackingFormat, []byte(im.BackingFormat))
	}
	names := make([]byte, 0, len(features)*(2+featureNameLen))
	for _, f := range features {
		entry := make([]byte, 2+featureNameLen)
		entry[0], entry[1] = byte(f.kind), f.bit
		copy(entry[2:], f.name)
		names = append(names, entry...)
	}
	h = appendExtension(h, extFeatureNames, names)
	h = appendExtension(h, 0, nil) // the end of the extensions
	if im.BackingFile != "" {
		be.PutUint64(h[8:], uint64(len(h)))
		be.PutUint32(h[16:], uint32(len(im.BackingFile)))
		h = append(h, im.BackingFile...)
	}

	refTable := be.AppendUint64(nil, 2*ClusterSize)
	// Every cluster is used once: the header, the refcount table and
	// block, and the L1 table's.
	refBlock := make([]byte, 0, 2*(3+l1Clusters))
	for range 3 + l1Clusters {
		refBlock = be.AppendUint16(refBlock, 1)
	}
	return layout{
		regions: []region{{0, h}, {ClusterSize, refTable}, {2 * ClusterSize, refBlock}},
		size:    l1Offset + l1Entries*8,
	}
}

// appendExtension appends a header extension: its type, its length and
// its data, padded to a multiple of 8 bytes.
func appendExtension(h []byte, typ uint32, data []byte) []byte {
	h = binary.BigEndian.AppendUint32(h, typ)
	h = binary.BigEndian.AppendUint32(h, uint32(len(data)))
	h = append(h, data...)
	return append(h, make([]byte, (8-len(data)%8)%8)...)
}
