package device

import (
	"reflect"
	"slices"
	"testing"

	"github.com/infinibay/infinivirt/pkg/qemu"
)

func executes(cmds []Command) []string {
	var out []string
	for _, c := range cmds {
		out = append(out, c.Execute)
	}
	return out
}

// A medium change adds the nodes a cold boot has, under the same names,
// and deletes a medium's nodes only when it has one.
func TestCDROMMediumCommands(t *testing.T) {
	full := NewCDROM("cd0", "/isos/a.iso")
	var cfg qemu.Config
	full.Configure(&cfg, nil)
	file, format := cfg.CDROMs[0].Blockdevs()
	insert := full.InsertMedium()
	if got := executes(insert); !slices.Equal(got, []string{"blockdev-add", "blockdev-add", "blockdev-insert-medium", "blockdev-close-tray"}) {
		t.Fatalf("insert: %v", got)
	}
	if !reflect.DeepEqual(insert[0].Arguments, file) || !reflect.DeepEqual(insert[1].Arguments, format) {
		t.Errorf("insert adds %+v and %+v, a cold boot %+v and %+v", insert[0].Arguments, insert[1].Arguments, file, format)
	}
	if got := executes(full.RemoveMedium()); !slices.Equal(got, []string{"blockdev-open-tray", "blockdev-remove-medium", "blockdev-del", "blockdev-del"}) {
		t.Errorf("remove: %v", got)
	}
	empty := full.WithMedium("")
	if got := executes(empty.RemoveMedium()); !slices.Equal(got, []string{"blockdev-open-tray", "blockdev-remove-medium"}) {
		t.Errorf("remove from an empty drive: %v", got)
	}
	if got := executes(empty.InsertMedium()); !slices.Equal(got, []string{"blockdev-close-tray"}) {
		t.Errorf("insert into an empty drive: %v", got)
	}
	if got := executes(empty.ClearMedium()); len(got) != 4 {
		t.Errorf("clear: %v, want every node deleted whatever the drive holds", got)
	}
	if full.Path() != "/isos/a.iso" || empty.Name() != "cd0" {
		t.Errorf("WithMedium changed the original (%s) or the name (%s)", full.Path(), empty.Name())
	}
}
