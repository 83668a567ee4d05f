package supervisor

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	sddbus "github.com/coreos/go-systemd/v22/dbus"
	"github.com/godbus/dbus/v5"

	"github.com/infinibay/infinivirt/pkg/errdefs"
)

const testID = "0b6cf5a4-1f7e-4d5b-9b61-3c1b0e1f2a3d"

func unitPath(unit string) dbus.ObjectPath {
	return unitPathRoot + "/" + dbus.ObjectPath(sddbus.PathBusEscape(unit))
}

func TestDecodeSignal(t *testing.T) {
	unit := "infinivirt-shim@" + testID + ".service"
	svc := &dbus.Signal{
		Path: unitPath(unit),
		Name: "org.freedesktop.DBus.Properties.PropertiesChanged",
		Body: []any{serviceIfc, map[string]dbus.Variant{
			"Result":         dbus.MakeVariant("signal"),
			"ExecMainCode":   dbus.MakeVariant(int32(2)),
			"ExecMainStatus": dbus.MakeVariant(int32(9)),
			"MainPID":        dbus.MakeVariant(uint32(0)),
			"StatusText":     dbus.MakeVariant("stopping"),
		}, []string{}},
	}
	ev, ok := decodeSignal(svc)
	if !ok || ev.VMID != testID || ev.Unit != unit || ev.Result != "signal" || ev.StatusText != "stopping" ||
		ev.ExecMainCode == nil || *ev.ExecMainCode != 2 || ev.ExecMainStatus == nil || *ev.ExecMainStatus != 9 {
		t.Errorf("service signal = %+v, %v", ev, ok)
	}
	u := &dbus.Signal{
		Path: unitPath(unit),
		Name: "org.freedesktop.DBus.Properties.PropertiesChanged",
		Body: []any{unitIfc, map[string]dbus.Variant{
			"ActiveState": dbus.MakeVariant("failed"), "SubState": dbus.MakeVariant("failed"),
			"Result": dbus.MakeVariant("ignored: the Unit interface has no Result"),
		}, []string{}},
	}
	ev, ok = decodeSignal(u)
	if !ok || ev.ActiveState != "failed" || ev.SubState != "failed" || ev.Result != "" || ev.ExecMainStatus != nil {
		t.Errorf("unit signal = %+v, %v", ev, ok)
	}
	removed := &dbus.Signal{Path: systemdPath, Name: managerIfc + ".UnitRemoved", Body: []any{unit, unitPath(unit)}}
	if ev, ok := decodeSignal(removed); !ok || !ev.Removed || ev.VMID != testID {
		t.Errorf("removed = %+v, %v", ev, ok)
	}
	for name, sig := range map[string]*dbus.Signal{
		"other unit":     {Path: unitPath("dbus.service"), Name: u.Name, Body: u.Body},
		"other template": {Path: unitPath("infinivirt-shim@not-a-uuid.service"), Name: u.Name, Body: u.Body},
		"other iface": {Path: u.Path, Name: u.Name, Body: []any{"org.freedesktop.systemd1.Scope", map[string]dbus.Variant{
			"ActiveState": dbus.MakeVariant("active")}, []string{}}},
		"nothing of ours": {Path: u.Path, Name: u.Name, Body: []any{unitIfc, map[string]dbus.Variant{
			"ActiveEnterTimestamp": dbus.MakeVariant(uint64(1))}, []string{}}},
		"short body":     {Path: u.Path, Name: u.Name, Body: []any{unitIfc}},
		"wrong types":    {Path: u.Path, Name: u.Name, Body: []any{42, "x"}},
		"other removed":  {Path: systemdPath, Name: removed.Name, Body: []any{"dbus.service", unitPath("dbus.service")}},
		"empty removed":  {Path: systemdPath, Name: removed.Name},
		"unknown member": {Path: systemdPath, Name: managerIfc + ".JobRemoved", Body: removed.Body},
	} {
		if ev, ok := decodeSignal(sig); ok {
			t.Errorf("%s: decoded %+v", name, ev)
		}
	}
	if _, ok := decodeSignal(nil); ok {
		t.Error("nil signal decoded")
	}
}

func TestPathBusUnescape(t *testing.T) {
	for _, unit := range []string{"infinivirt-shim@" + testID + ".service", "a_b.service", "x", "-.slice"} {
		if got := pathBusUnescape(sddbus.PathBusEscape(unit)); got != unit {
			t.Errorf("round trip of %q gave %q", unit, got)
		}
	}
}

func TestUnitNames(t *testing.T) {
	unit, err := UnitName(testID)
	if err != nil || unit != "infinivirt-shim@"+testID+".service" {
		t.Errorf("UnitName = %q, %v", unit, err)
	}
	for _, bad := range []string{"", "x", strings.ToUpper(testID), "../" + testID, testID + "\n"} {
		if _, err := UnitName(bad); !isCode(err, errdefs.CodeInvalidArgument) {
			t.Errorf("UnitName(%q) = %v, want InvalidArgument", bad, err)
		}
	}
	if id, ok := VMIDFromUnit(unit); !ok || id != testID {
		t.Errorf("VMIDFromUnit = %q, %v", id, ok)
	}
	for _, bad := range []string{"infinivirt-shim@.service", "infinivirt-shim@x.service", "dbus.service", "infinivirt-shim@" + testID + ".scope"} {
		if _, ok := VMIDFromUnit(bad); ok {
			t.Errorf("VMIDFromUnit(%q) accepted", bad)
		}
	}
}

func TestPropertiesTypes(t *testing.T) {
	spec := UnitSpec{
		VMID: testID, ExecStart: []string{"/usr/bin/infinivirt-shim", "run"}, ExecStopPost: []string{"/usr/bin/infinivirt-shim", "cleanup"},
		MemoryMax: 1 << 30, DeviceAllow: []string{"/dev/kvm", "/dev/vfio/vfio", "char-vfio"}, SuccessExitStatus: []int{64, 65}, StopTimeout: 3 * time.Second,
		LimitMEMLOCK: 2 << 30,
	}
	props, err := spec.properties()
	if err != nil {
		t.Fatal(err)
	}
	sigs := map[string]string{}
	for _, p := range props {
		sigs[p.Name] = p.Value.Signature().String()
	}
	for name, want := range map[string]string{
		"Type": "s", "NotifyAccess": "s", "Slice": "s", "KillMode": "s", "TimeoutStopUSec": "t",
		"ExecStart": "a(sasb)", "ExecStopPost": "a(sasb)", "DevicePolicy": "s", "DeviceAllow": "a(ss)",
		"MemoryMax": "t", "TasksMax": "t", "StandardOutput": "s", "StandardError": "s", "SyslogIdentifier": "s",
		"Environment": "as", "Restart": "s", "SuccessExitStatus": "(aiai)", "Description": "s",
		"LimitMEMLOCK": "t", "LimitMEMLOCKSoft": "t",
	} {
		if sigs[name] != want {
			t.Errorf("%s has D-Bus type %q, want %q", name, sigs[name], want)
		}
	}
	if _, ok := sigs["CollectMode"]; ok {
		t.Error("CollectMode must stay systemd's default, so Result stays readable")
	}
	for name, bad := range map[string]UnitSpec{
		"execStart":            {VMID: testID},
		"deviceAllow[0]":       {VMID: testID, ExecStart: []string{"/x"}, DeviceAllow: []string{"kvm"}},
		"deviceAllow[1]":       {VMID: testID, ExecStart: []string{"/x"}, DeviceAllow: []string{"/dev/kvm", "/dev/a b"}},
		"deviceAllow[2]":       {VMID: testID, ExecStart: []string{"/x"}, DeviceAllow: []string{"/dev/kvm", "char-vfio", "block-sd*"}},
		"successExitStatus[0]": {VMID: testID, ExecStart: []string{"/x"}, SuccessExitStatus: []int{256}},
		"execStopPost":         {VMID: testID, ExecStart: []string{"/x"}, ExecStopPost: []string{""}},
	} {
		if _, err := bad.properties(); !isCode(err, errdefs.CodeInvalidArgument) || !strings.Contains(err.Error(), name) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// TestEventQueueDropsAndReconciles: a consumer that does not read makes the
// queue drop and count; once it drains, a reconcile is requested.
func TestEventQueueDropsAndReconciles(t *testing.T) {
	drops := &dropCounter{}
	q := &eventQueue{max: 3, drops: drops, ready: make(chan struct{}, 1), reconcile: make(chan struct{}, 1)}
	for i := range 5 {
		q.push(UnitEvent{VMID: string(rune('a' + i))})
	}
	if drops.n.Load() != 2 {
		t.Fatalf("drops = %d, want 2", drops.n.Load())
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	out := make(chan UnitEvent)
	go q.pump(ctx, out)
	for _, want := range []string{"a", "b", "c"} {
		if ev := <-out; ev.VMID != want {
			t.Errorf("got %q, want %q", ev.VMID, want)
		}
	}
	select {
	case <-q.reconcile:
	case <-time.After(5 * time.Second):
		t.Fatal("no reconcile after drops")
	}
}

func FuzzDecodeSignal(f *testing.F) {
	f.Add("infinivirt-shim@"+testID+".service", serviceIfc, "Result", "signal", int32(9), uint32(5), false)
	f.Add("dbus.service", unitIfc, "ActiveState", "active", int32(0), uint32(0), true)
	f.Fuzz(func(t *testing.T, unit, iface, key, sval string, ival int32, uval uint32, removed bool) {
		var sig *dbus.Signal
		if removed {
			sig = &dbus.Signal{Path: systemdPath, Name: managerIfc + ".UnitRemoved", Body: []any{unit}}
		} else {
			sig = &dbus.Signal{
				Path: unitPathRoot + "/" + dbus.ObjectPath(pathBusEscape(unit)),
				Name: "org.freedesktop.DBus.Properties.PropertiesChanged",
				Body: []any{iface, map[string]dbus.Variant{
					key: dbus.MakeVariant(sval), "ExecMainStatus": dbus.MakeVariant(ival), "MainPID": dbus.MakeVariant(uval),
				}, []string{}},
			}
		}
		ev, ok := decodeSignal(sig)
		if !ok {
			return
		}
		if _, valid := VMIDFromUnit(ev.Unit); !valid || ev.Unit != unit {
			t.Errorf("decoded an event for %q (from %q)", ev.Unit, unit)
		}
	})
}

// pathBusEscape encodes like systemd's sd_bus_path_encode: letters and
// digits stay (except a leading digit), every other byte becomes _xx with
// two hex digits. go-systemd's PathBusEscape writes one digit below 0x10.
func pathBusEscape(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		alnum := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' && i > 0
		if alnum {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "_%02x", c)
		}
	}
	return b.String()
}

func FuzzPathBusUnescape(f *testing.F) {
	f.Add("infinivirt-shim@" + testID + ".service")
	f.Add("_")
	f.Fuzz(func(t *testing.T, s string) {
		if s == "" {
			return
		}
		if got := pathBusUnescape(pathBusEscape(s)); got != s {
			t.Errorf("round trip of %q gave %q", s, got)
		}
		_ = pathBusUnescape(s)
	})
}
