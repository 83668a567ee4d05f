package sysfstest

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestBuild(t *testing.T) {
	desc := filepath.Join(t.TempDir(), "host.tree")
	if err := os.WriteFile(desc, []byte(strings.Join([]string{
		"# a device and its link",
		"dir  kernel/iommu_groups",
		"file devices/pci0000:00/0000:00:00.0/vendor 0x8086",
		"",
		"link bus/pci/devices/0000:00:00.0 ../../../devices/pci0000:00/0000:00:00.0",
	}, "\n")), 0o644); err != nil {
		t.Fatal(err)
	}
	root := Build(t, desc)
	if st, err := os.Stat(filepath.Join(root, "kernel/iommu_groups")); err != nil || !st.IsDir() {
		t.Errorf("dir: %v", err)
	}
	if target, err := os.Readlink(filepath.Join(root, "bus/pci/devices/0000:00:00.0")); err != nil || target != "../../../devices/pci0000:00/0000:00:00.0" {
		t.Errorf("link %q, %v", target, err)
	}
	if b, err := os.ReadFile(filepath.Join(root, "bus/pci/devices/0000:00:00.0/vendor")); err != nil || string(b) != "0x8086\n" {
		t.Errorf("file through the link: %q, %v", b, err)
	}
}

func TestEntriesStayInTheTree(t *testing.T) {
	root := t.TempDir()
	for _, line := range []string{"file ../x 1", "file /etc/x 1", "link a", "fifo a", "file"} {
		if err := make1(root, line); err == nil {
			t.Errorf("%q was accepted", line)
		}
	}
}
