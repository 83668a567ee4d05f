package isoimage

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"unicode/utf16"
)

// Volumes is what the volume descriptors of an image say. It is read with
// our own small parser because go-diskfs reads Joliet names only from images
// without Rock Ridge, and answer media for Windows must be checked through
// Joliet, the names Windows Setup sees.
type Volumes struct {
	Label       string // primary volume identifier, the label blkid reports
	JolietLabel string // Joliet volume identifier; empty without Joliet
	Joliet      bool   // a Joliet supplementary volume descriptor is present
	RockRidge   bool   // the root directory carries the SUSP "SP" entry
	BlockSize   int

	primaryRoot extent
	jolietRoot  extent
}

type extent struct {
	lba, size uint32
}

// Tree names one of the directory hierarchies of an image.
type Tree int

const (
	// PrimaryTree holds the plain ISO 9660 names (upper case, 8.3 or 31 characters).
	PrimaryTree Tree = iota
	// JolietTree holds the UCS-2 names Windows reads.
	JolietTree
)

const (
	sectorSize     = 2048
	firstVDSector  = 16
	maxDescriptors = 64
	maxDirSize     = 16 << 20 // no real answer or installer ISO has a bigger directory
)

var errCorrupt = errors.New("corrupt ISO 9660 structure")

// ReadVolumes reads the volume descriptor set at sector 16.
func ReadVolumes(r io.ReaderAt) (Volumes, error) {
	var v Volumes
	var havePrimary bool
	buf := make([]byte, sectorSize)
	for i := 0; i < maxDescriptors; i++ {
		if _, err := r.ReadAt(buf, int64(firstVDSector+i)*sectorSize); err != nil {
			if havePrimary {
				break
			}
			return v, fmt.Errorf("%w: volume descriptor %d: %v", ErrNotISO, i, err)
		}
		if string(buf[1:6]) != "CD001" {
			if havePrimary {
				break
			}
			return v, fmt.Errorf("%w: no CD001 signature at sector %d", ErrNotISO, firstVDSector+i)
		}
		switch buf[0] {
		case 255: // set terminator
			i = maxDescriptors
		case 1:
			havePrimary = true
			v.Label = strings.TrimRight(string(buf[40:72]), " \x00")
			v.BlockSize = int(binary.LittleEndian.Uint16(buf[128:130]))
			v.primaryRoot = rootExtent(buf)
		case 2:
			esc := buf[88:91]
			if bytes.Equal(esc, []byte("%/@")) || bytes.Equal(esc, []byte("%/C")) || bytes.Equal(esc, []byte("%/E")) {
				v.Joliet = true
				v.JolietLabel = strings.TrimRight(decodeUCS2(buf[40:72]), " \x00")
				v.jolietRoot = rootExtent(buf)
			}
		}
	}
	if !havePrimary {
		return v, fmt.Errorf("%w: no primary volume descriptor", ErrNotISO)
	}
	if v.BlockSize != 2048 && v.BlockSize != 4096 && v.BlockSize != 8192 {
		return v, fmt.Errorf("%w: logical block size %d", errCorrupt, v.BlockSize)
	}
	rr, err := v.rootHasSUSP(r)
	if err != nil {
		return v, err
	}
	v.RockRidge = rr
	return v, nil
}

// rootExtent reads the 34-byte root directory record of a volume descriptor.
func rootExtent(vd []byte) extent {
	rec := vd[156:190]
	return extent{lba: binary.LittleEndian.Uint32(rec[2:6]), size: binary.LittleEndian.Uint32(rec[10:14])}
}

// rootHasSUSP looks for the "SP" entry in the system use area of the root's
// "." record, which is how Rock Ridge announces itself.
func (v Volumes) rootHasSUSP(r io.ReaderAt) (bool, error) {
	b, err := v.readExtent(r, v.primaryRoot)
	if err != nil {
		return false, err
	}
	if len(b) < 34 || int(b[0]) < 34 || int(b[0]) > len(b) {
		return false, fmt.Errorf("%w: root directory record", errCorrupt)
	}
	rec := b[:b[0]]
	su := 33 + int(rec[32])
	if rec[32]%2 == 0 {
		su++ // padding byte after an even-length name
	}
	return su+4 <= len(rec) && rec[su] == 'S' && rec[su+1] == 'P', nil
}

func (v Volumes) readExtent(r io.ReaderAt, e extent) ([]byte, error) {
	if e.size == 0 || e.size > maxDirSize {
		return nil, fmt.Errorf("%w: directory size %d", errCorrupt, e.size)
	}
	b := make([]byte, e.size)
	if _, err := r.ReadAt(b, int64(e.lba)*int64(v.BlockSize)); err != nil {
		return nil, fmt.Errorf("%w: directory at block %d: %v", errCorrupt, e.lba, err)
	}
	return b, nil
}

type dirEntry struct {
	name string
	dir  bool
	ext  extent
}

// readDir reads and decodes the directory at e.
func (v Volumes) readDir(r io.ReaderAt, e extent, tree Tree) ([]dirEntry, error) {
	b, err := v.readExtent(r, e)
	if err != nil {
		return nil, err
	}
	return v.parseDir(b, tree)
}

// parseDir decodes the records of one directory extent.
func (v Volumes) parseDir(b []byte, tree Tree) ([]dirEntry, error) {
	var out []dirEntry
	for pos := 0; pos < len(b); {
		l := int(b[pos])
		if l == 0 { // records never cross a block: skip to the next one
			pos = (pos/v.BlockSize + 1) * v.BlockSize
			continue
		}
		if l < 34 || pos+l > len(b) {
			return nil, fmt.Errorf("%w: directory record at %d", errCorrupt, pos)
		}
		rec := b[pos : pos+l]
		pos += l
		nameLen := int(rec[32])
		if 33+nameLen > l {
			return nil, fmt.Errorf("%w: name length %d in a %d-byte record", errCorrupt, nameLen, l)
		}
		raw := rec[33 : 33+nameLen]
		if nameLen == 1 && (raw[0] == 0 || raw[0] == 1) {
			continue // "." and ".."
		}
		var name string
		if tree == JolietTree {
			name = decodeUCS2(raw)
		} else {
			name = string(raw)
		}
		isDir := rec[25]&2 != 0
		if !isDir {
			name = strings.TrimSuffix(name, ";1")
			name = strings.TrimSuffix(name, ".")
		}
		out = append(out, dirEntry{
			name: name,
			dir:  isDir,
			ext:  extent{lba: binary.LittleEndian.Uint32(rec[2:6]), size: binary.LittleEndian.Uint32(rec[10:14])},
		})
	}
	return out, nil
}

// ListDir lists the names in dir ("." or "" for the root) as the given tree
// spells them, sorted and without ISO 9660 version suffixes. Lookups in the
// primary tree ignore case, as its names are upper case.
func (v Volumes) ListDir(r io.ReaderAt, tree Tree, dir string) ([]string, error) {
	root := v.primaryRoot
	if tree == JolietTree {
		if !v.Joliet {
			return nil, errors.New("isoimage: image has no Joliet volume")
		}
		root = v.jolietRoot
	}
	cur := root
	for _, part := range strings.Split(strings.Trim(dir, "/"), "/") {
		if part == "" || part == "." {
			continue
		}
		ents, err := v.readDir(r, cur, tree)
		if err != nil {
			return nil, err
		}
		found := false
		for _, e := range ents {
			if e.dir && (e.name == part || (tree == PrimaryTree && strings.EqualFold(e.name, part))) {
				cur, found = e.ext, true
				break
			}
		}
		if !found {
			return nil, fmt.Errorf("isoimage: directory %q not found", dir)
		}
	}
	ents, err := v.readDir(r, cur, tree)
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	var names []string
	for _, e := range ents {
		if !seen[e.name] { // multi-extent files repeat their record
			seen[e.name] = true
			names = append(names, e.name)
		}
	}
	sort.Strings(names)
	return names, nil
}

// JolietNames lists dir as Windows sees it.
func (im *Image) JolietNames(dir string) ([]string, error) {
	return im.vols.ListDir(im.f, JolietTree, dir)
}

// PrimaryNames lists dir with the plain ISO 9660 names.
func (im *Image) PrimaryNames(dir string) ([]string, error) {
	return im.vols.ListDir(im.f, PrimaryTree, dir)
}

func decodeUCS2(b []byte) string {
	u := make([]uint16, len(b)/2)
	for i := range u {
		u[i] = binary.BigEndian.Uint16(b[2*i:])
	}
	return string(utf16.Decode(u))
}
