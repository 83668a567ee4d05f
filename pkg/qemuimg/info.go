package qemuimg

import (
	"encoding/json"
	"fmt"
	"time"
)

// Info is what `qemu-img info --output=json` says about one image.
type Info struct {
	Filename    string
	Format      string
	VirtualSize int64 // bytes the guest sees
	ActualSize  int64 // bytes allocated on the host
	ClusterSize int64 // 0 for raw
	DirtyFlag   bool
	Encrypted   bool
	// BackingFile is the backing file as written in the image; relative
	// names are relative to the image's directory. FullBackingFile is
	// qemu-img's resolution of it.
	BackingFile     string
	FullBackingFile string
	BackingFormat   string
	// DataFile is a qcow2 external data file as written in the image.
	DataFile    string
	DataFileRaw bool
	Corrupt     bool // qcow2 marked the image corrupt
	Snapshots   []Snapshot
}

// Snapshot is an internal snapshot of a qcow2 image.
type Snapshot struct {
	ID          string
	Name        string
	Date        time.Time
	VMClock     time.Duration // guest clock when taken
	VMStateSize int64         // 0 for a disk-only snapshot
}

// rawInfo mirrors the JSON; pointers tell a missing field from a zero.
type rawInfo struct {
	Filename        string  `json:"filename"`
	Format          *string `json:"format"`
	VirtualSize     *int64  `json:"virtual-size"`
	ActualSize      int64   `json:"actual-size"`
	ClusterSize     int64   `json:"cluster-size"`
	DirtyFlag       bool    `json:"dirty-flag"`
	Encrypted       bool    `json:"encrypted"`
	BackingFilename string  `json:"backing-filename"`
	FullBacking     string  `json:"full-backing-filename"`
	BackingFormat   string  `json:"backing-filename-format"`
	FormatSpecific  *struct {
		Type string `json:"type"`
		Data struct {
			DataFile    string `json:"data-file"`
			DataFileRaw bool   `json:"data-file-raw"`
			Corrupt     bool   `json:"corrupt"`
		} `json:"data"`
	} `json:"format-specific"`
	Snapshots []struct {
		ID          string `json:"id"`
		Name        string `json:"name"`
		DateSec     int64  `json:"date-sec"`
		DateNsec    int64  `json:"date-nsec"`
		VMClockSec  int64  `json:"vm-clock-sec"`
		VMClockNsec int64  `json:"vm-clock-nsec"`
		VMStateSize int64  `json:"vm-state-size"`
	} `json:"snapshots"`
}

// maxClockSec keeps a snapshot's guest clock within time.Duration.
const maxClockSec = int64(1<<63-1) / int64(time.Second)

// ParseInfo decodes the JSON of `qemu-img info --output=json` for one
// image and checks that it makes sense.
func ParseInfo(b []byte) (*Info, error) {
	var r rawInfo
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("qemu-img info: %w", err)
	}
	switch {
	case r.Format == nil || *r.Format == "":
		return nil, fmt.Errorf("qemu-img info: no format")
	case r.VirtualSize == nil || *r.VirtualSize < 0:
		return nil, fmt.Errorf("qemu-img info: no valid virtual-size")
	case r.ActualSize < 0 || r.ClusterSize < 0:
		return nil, fmt.Errorf("qemu-img info: negative size")
	}
	info := &Info{
		Filename:        r.Filename,
		Format:          *r.Format,
		VirtualSize:     *r.VirtualSize,
		ActualSize:      r.ActualSize,
		ClusterSize:     r.ClusterSize,
		DirtyFlag:       r.DirtyFlag,
		Encrypted:       r.Encrypted,
		BackingFile:     r.BackingFilename,
		FullBackingFile: r.FullBacking,
		BackingFormat:   r.BackingFormat,
	}
	if fs := r.FormatSpecific; fs != nil {
		info.DataFile, info.DataFileRaw, info.Corrupt = fs.Data.DataFile, fs.Data.DataFileRaw, fs.Data.Corrupt
	}
	for _, s := range r.Snapshots {
		if s.DateNsec < 0 || s.DateNsec >= 1e9 || s.VMClockNsec < 0 || s.VMClockNsec >= 1e9 ||
			s.VMClockSec < 0 || s.VMClockSec >= maxClockSec || s.VMStateSize < 0 {
			return nil, fmt.Errorf("qemu-img info: snapshot %q has out-of-range fields", s.Name)
		}
		info.Snapshots = append(info.Snapshots, Snapshot{
			ID:          s.ID,
			Name:        s.Name,
			Date:        time.Unix(s.DateSec, s.DateNsec).UTC(),
			VMClock:     time.Duration(s.VMClockSec)*time.Second + time.Duration(s.VMClockNsec),
			VMStateSize: s.VMStateSize,
		})
	}
	return info, nil
}
