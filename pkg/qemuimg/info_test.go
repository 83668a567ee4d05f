package qemuimg_test

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/infinibay/infinivirt/pkg/qemuimg"
)

func readTestdata(t testing.TB, name string) []byte {
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestParseInfoRecorded(t *testing.T) {
	info, err := qemuimg.ParseInfo(readTestdata(t, "overlay-snapshot.json"))
	if err != nil {
		t.Fatal(err)
	}
	if info.Format != "qcow2" || info.VirtualSize != 64<<20 || info.BackingFile != "base.qcow2" ||
		info.BackingFormat != "qcow2" || info.FullBackingFile != "base.qcow2" || info.ClusterSize != 65536 {
		t.Errorf("overlay info = %+v", info)
	}
	if len(info.Snapshots) != 1 || info.Snapshots[0].Name != "before-update" || info.Snapshots[0].ID != "1" ||
		info.Snapshots[0].Date.Year() < 2020 {
		t.Errorf("snapshots = %+v", info.Snapshots)
	}

	info, err = qemuimg.ParseInfo(readTestdata(t, "data-file.json"))
	if err != nil {
		t.Fatal(err)
	}
	if info.DataFile != "data.raw" || info.DataFileRaw || info.Corrupt {
		t.Errorf("data-file info = %+v", info)
	}

	info, err = qemuimg.ParseInfo(readTestdata(t, "raw.json"))
	if err != nil {
		t.Fatal(err)
	}
	if info.Format != "raw" || info.ClusterSize != 0 || info.DataFile != "" {
		t.Errorf("raw info = %+v", info)
	}
}

func TestParseInfoRejects(t *testing.T) {
	for _, in := range []string{
		``,
		`null`,
		`[]`,
		`{"virtual-size": 1}`,
		`{"format": "qcow2"}`,
		`{"format": "", "virtual-size": 1}`,
		`{"format": "raw", "virtual-size": -1}`,
		`{"format": "raw", "virtual-size": 1, "actual-size": -5}`,
		`{"format": "raw", "virtual-size": 1e30}`,
		`{"format": "raw", "virtual-size": 1} trailing`,
		`{"format": "qcow2", "virtual-size": 1, "snapshots": [{"name": "s", "date-nsec": 1000000000}]}`,
		`{"format": "qcow2", "virtual-size": 1, "snapshots": [{"name": "s", "vm-clock-sec": 9223372036854775807}]}`,
	} {
		if info, err := qemuimg.ParseInfo([]byte(in)); err == nil {
			t.Errorf("ParseInfo(%s) = %+v, want an error", in, info)
		}
	}
}

func FuzzParseInfo(f *testing.F) {
	for _, name := range []string{"overlay-snapshot.json", "data-file.json", "raw.json"} {
		f.Add(readTestdata(f, name))
	}
	f.Add([]byte(`{"format":"qcow2","virtual-size":0,"snapshots":[{"date-sec":-1,"vm-clock-nsec":999999999}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		info, err := qemuimg.ParseInfo(b)
		if err != nil {
			return
		}
		if info.Format == "" || info.VirtualSize < 0 || info.ActualSize < 0 || info.ClusterSize < 0 {
			t.Fatalf("accepted an impossible image: %+v", info)
		}
		for _, s := range info.Snapshots {
			if s.VMClock < 0 || s.VMStateSize < 0 || s.Date.Location() != time.UTC {
				t.Fatalf("accepted an impossible snapshot: %+v", s)
			}
		}
	})
}

func BenchmarkParseInfo(b *testing.B) {
	in := readTestdata(b, "overlay-snapshot.json")
	b.SetBytes(int64(len(in)))
	for b.Loop() {
		if _, err := qemuimg.ParseInfo(in); err != nil {
			b.Fatal(err)
		}
	}
}
