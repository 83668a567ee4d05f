package qemuimg

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
)

// qcow2 header fields this package reads (big-endian; see QEMU's
// docs/interop/qcow2.txt).
const (
	qcow2Magic            = 0x514649fb // "QFI\xfb"
	qcow2IncompatDataFile = 1 << 2     // the image keeps its data in an external file
	qcow2HeaderV2Len      = 72
	qcow2HeaderV3MinLen   = 104
)

// Header is what a disk image's own header says about where its data may
// come from, read without running qemu-img.
type Header struct {
	Format      string
	VirtualSize int64 // qcow2 only; 0 for raw
	// References is true when the image names another file: a backing file
	// or an external data file. Only then is the full qemu-img check needed.
	References bool
}

// ReadHeader reads the header of an image of the given, never probed,
// format. It is the fast path of a start: a qcow2 image that names no other
// file needs no qemu-img at all.
func ReadHeader(path, format string) (Header, error) {
	switch format {
	case FormatRaw:
		if _, err := os.Stat(path); err != nil {
			return Header{}, err
		}
		return Header{Format: format}, nil
	case FormatQCOW2:
	default:
		return Header{}, fmt.Errorf("qemuimg: unknown format %q", format)
	}
	f, err := os.Open(path)
	if err != nil {
		return Header{}, err
	}
	defer f.Close()
	buf := make([]byte, qcow2HeaderV3MinLen)
	n, err := io.ReadFull(f, buf)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) {
		return Header{}, fmt.Errorf("qemuimg: read %s: %w", path, err)
	}
	return parseQCOW2Header(buf[:n])
}

func parseQCOW2Header(b []byte) (Header, error) {
	if len(b) < qcow2HeaderV2Len {
		return Header{}, errors.New("qemuimg: too short for a qcow2 header")
	}
	be := binary.BigEndian
	if be.Uint32(b[0:4]) != qcow2Magic {
		return Header{}, errors.New("qemuimg: not a qcow2 image (bad magic)")
	}
	h := Header{Format: FormatQCOW2, VirtualSize: int64(be.Uint64(b[24:32]))}
	if h.VirtualSize < 0 {
		return Header{}, errors.New("qemuimg: qcow2 virtual size out of range")
	}
	switch version := be.Uint32(b[4:8]); version {
	case 2:
	case 3:
		if len(b) < qcow2HeaderV3MinLen {
			return Header{}, errors.New("qemuimg: qcow2 v3 header truncated")
		}
		h.References = be.Uint64(b[72:80])&qcow2IncompatDataFile != 0
	default:
		return Header{}, fmt.Errorf("qemuimg: qcow2 version %d is not supported", version)
	}
	if be.Uint64(b[8:16]) != 0 || be.Uint32(b[16:20]) != 0 {
		h.References = true // a backing file
	}
	return h, nil
}
