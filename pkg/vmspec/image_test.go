package vmspec

import (
	"errors"
	"testing"

	"github.com/infinibay/infinivirt/pkg/api"
	"github.com/infinibay/infinivirt/pkg/errdefs"
)

// TestCreateFromAnImage: diskImage makes disk0 a linked clone unless
// diskClone says full; bad names, clones and formats name their field.
func TestCreateFromAnImage(t *testing.T) {
	in := validInput()
	in.DiskImage = "golden"
	s, err := FromCreateInput(in, defaults)
	if err != nil {
		t.Fatal(err)
	}
	if d := s.SystemDisk(); d.Image != "golden" || d.Clone != api.CloneLinked || d.Format != "qcow2" {
		t.Errorf("disk0 %+v, want a qcow2 linked clone of golden", d)
	}
	in.DiskClone, in.DiskFormat = api.CloneFull, "raw"
	if s, err = FromCreateInput(in, defaults); err != nil || s.SystemDisk().Clone != api.CloneFull {
		t.Errorf("a raw full copy: %v", err)
	}
	cases := []struct {
		field  string
		mutate func(*api.CreateVMInput)
	}{
		{"diskImage", func(in *api.CreateVMInput) { in.DiskImage = "/var/lib/images/golden.qcow2" }},
		{"diskImage", func(in *api.CreateVMInput) { in.DiskImage = "../golden" }},
		{"diskImage", func(in *api.CreateVMInput) { in.DiskImage = "-o" }},
		{"diskClone", func(in *api.CreateVMInput) { in.DiskImage, in.DiskClone = "golden", "thin" }},
		{"diskClone", func(in *api.CreateVMInput) { in.DiskClone = api.CloneLinked }},
		{"diskFormat", func(in *api.CreateVMInput) { in.DiskImage, in.DiskFormat = "golden", "raw" }},
	}
	for _, c := range cases {
		in := validInput()
		c.mutate(&in)
		_, err := FromCreateInput(in, defaults)
		var e *errdefs.Error
		if !errors.As(err, &e) || e.Code != errdefs.CodeInvalidArgument || e.Field != c.field {
			t.Errorf("image %q clone %q format %q: %v, want InvalidArgument naming %s", in.DiskImage, in.DiskClone, in.DiskFormat, err, c.field)
		}
	}
}
