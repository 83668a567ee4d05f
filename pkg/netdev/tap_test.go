package netdev

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"

	"github.com/infinibay/infinivirt/pkg/errdefs"
)

var guestMAC = net.HardwareAddr{0x52, 0x54, 0x00, 0x12, 0x34, 0x56}

func createTAP(t *testing.T, cfg TAPConfig) *TAP {
	t.Helper()
	tap, err := CreateTAP(testCtx(t), cfg)
	if err != nil {
		t.Fatalf("CreateTAP(%+v): %v", cfg, err)
	}
	t.Cleanup(func() { _ = tap.Close() })
	return tap
}

func TestCreateTAPAttachedUpMultiQueue(t *testing.T) {
	inFreshNetns(t)
	br := addBridge(t, "ivbr0")

	tap := createTAP(t, TAPConfig{Name: "ivttest0", Bridge: "ivbr0", GuestMAC: guestMAC, Queues: 2})

	if len(tap.Files) != 2 {
		t.Fatalf("got %d queue fds, want 2", len(tap.Files))
	}
	l, ok := mustLink(t, "ivttest0").(*netlink.Tuntap)
	if !ok {
		t.Fatalf("ivttest0 is a %s, not a tuntap", mustLink(t, "ivttest0").Type())
	}
	if l.Mode != netlink.TUNTAP_MODE_TAP {
		t.Errorf("mode %v, want tap", l.Mode)
	}
	for _, f := range []netlink.TuntapFlag{netlink.TUNTAP_MULTI_QUEUE, netlink.TUNTAP_NO_PI, netlink.TUNTAP_VNET_HDR} {
		if l.Flags&f == 0 {
			t.Errorf("flags %#x lack %#x", l.Flags, f)
		}
	}
	if !l.NonPersist {
		t.Error("TAP is persistent; it must vanish with its fds")
	}
	if l.Queues != 2 {
		t.Errorf("kernel reports %d queues, want 2", l.Queues)
	}
	if l.MasterIndex != br.Index {
		t.Errorf("master index %d, want bridge %d", l.MasterIndex, br.Index)
	}
	if l.Attrs().Flags&net.FlagUp == 0 {
		t.Error("TAP is not up")
	}
	if got, want := l.HardwareAddr.String(), "fe:54:00:12:34:56"; got != want || tap.HostMAC.String() != want {
		t.Errorf("TAP MAC %s (reported %s), want %s", got, tap.HostMAC, want)
	}
	if l.MTU != br.MTU || tap.MTU != br.MTU {
		t.Errorf("MTU %d (reported %d), want the bridge's %d", l.MTU, tap.MTU, br.MTU)
	}
	if tap.Index != l.Index {
		t.Errorf("reported index %d, kernel says %d", tap.Index, l.Index)
	}

	// The same facts as iproute2 shows them to an operator.
	d := ipLinkDetails(t, "ivttest0")
	want := map[string]any{"kind": "tun", "type": "tap", "pi": false, "vnet_hdr": true, "multi_queue": true, "persist": false, "numqueues": 2.0}
	for k, v := range want {
		if d[k] != v {
			t.Errorf("ip -d link: %s = %v, want %v (all: %v)", k, d[k], v, d)
		}
	}
}

func TestCreateTAPSingleQueueAndExplicitMTU(t *testing.T) {
	inFreshNetns(t)
	addBridge(t, "ivbr0")
	if err := netlink.LinkSetMTU(mustLink(t, "ivbr0"), 9000); err != nil {
		t.Fatal(err)
	}
	tap := createTAP(t, TAPConfig{Name: "ivttest0", Bridge: "ivbr0", GuestMAC: guestMAC, MTU: 1500})
	if len(tap.Files) != 1 {
		t.Fatalf("Queues 0 gave %d fds, want 1", len(tap.Files))
	}
	if l := mustLink(t, "ivttest0"); l.Attrs().MTU != 1500 {
		t.Errorf("MTU %d, want 1500", l.Attrs().MTU)
	}
}

func TestCloseRemovesTAP(t *testing.T) {
	inFreshNetns(t)
	addBridge(t, "ivbr0")
	tap, err := CreateTAP(testCtx(t), TAPConfig{Name: "ivttest0", Bridge: "ivbr0", GuestMAC: guestMAC, Queues: 4})
	if err != nil {
		t.Fatal(err)
	}
	if linkGone(t, "ivttest0") {
		t.Fatal("TAP missing right after CreateTAP")
	}
	if err := tap.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if !linkGone(t, "ivttest0") {
		t.Fatal("TAP still exists after its fds were closed")
	}
	if err := tap.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

func TestCreateTAPMissingBridge(t *testing.T) {
	inFreshNetns(t)
	_, err := CreateTAP(testCtx(t), TAPConfig{Name: "ivttest0", Bridge: "nosuchbr", GuestMAC: guestMAC})
	if !errors.Is(err, ErrBridgeNotFound) {
		t.Fatalf("err = %v, want ErrBridgeNotFound", err)
	}
	if !strings.Contains(err.Error(), `"nosuchbr"`) {
		t.Errorf("message %q does not name the bridge", err)
	}
	if ae := errdefs.As(err); ae.Code != errdefs.CodeNotFound {
		t.Errorf("API class %s, want NotFound", ae.Code)
	}
	if !linkGone(t, "ivttest0") {
		t.Error("a TAP was left behind")
	}
	if err := BridgeExists(testCtx(t), "nosuchbr"); !errors.Is(err, ErrBridgeNotFound) {
		t.Errorf("BridgeExists = %v, want ErrBridgeNotFound", err)
	}
}

func TestCreateTAPMasterNotBridge(t *testing.T) {
	for _, kind := range []string{"dummy", "veth"} {
		t.Run(kind, func(t *testing.T) {
			inFreshNetns(t)
			switch kind {
			case "dummy":
				if err := netlink.LinkAdd(&netlink.Dummy{LinkAttrs: netlink.LinkAttrs{Name: "notbr"}}); err != nil {
					t.Skipf("this kernel cannot make a dummy link (%v); the veth case covers a non-bridge master", err)
				}
			case "veth":
				addVeth(t, "notbr", nil)
			}
			_, err := CreateTAP(testCtx(t), TAPConfig{Name: "ivttest0", Bridge: "notbr", GuestMAC: guestMAC})
			if !errors.Is(err, ErrNotBridge) {
				t.Fatalf("err = %v, want ErrNotBridge", err)
			}
			if msg := err.Error(); !strings.Contains(msg, `"notbr"`) || !strings.Contains(msg, kind) {
				t.Errorf("message %q should name the link and its kind", msg)
			}
			if !linkGone(t, "ivttest0") {
				t.Error("a TAP was left behind")
			}
			if err := BridgeExists(testCtx(t), "notbr"); !errors.Is(err, ErrNotBridge) {
				t.Errorf("BridgeExists = %v, want ErrNotBridge", err)
			}
		})
	}
}

func TestCreateTAPRollsBackWhenAStepFails(t *testing.T) {
	inFreshNetns(t)
	br := addBridge(t, "ivbr0")
	// The bridge disappears once the TAP exists, so attaching fails in the kernel.
	testHookCreated = func() {
		if err := netlink.LinkDel(br); err != nil {
			t.Errorf("delete bridge: %v", err)
		}
	}
	t.Cleanup(func() { testHookCreated = nil })

	_, err := CreateTAP(testCtx(t), TAPConfig{Name: "ivttest0", Bridge: "ivbr0", GuestMAC: guestMAC, Queues: 3})
	var op *OpError
	if !errors.As(err, &op) || !strings.Contains(op.Op, "attach to bridge ivbr0") {
		t.Fatalf("err = %v, want an OpError from the attach step", err)
	}
	if !linkGone(t, "ivttest0") {
		t.Error("the half-made TAP was left behind")
	}
}

func TestCreateTAPRefusesExistingName(t *testing.T) {
	inFreshNetns(t)
	addBridge(t, "ivbr0")
	first := createTAP(t, TAPConfig{Name: "ivttest0", Bridge: "ivbr0", GuestMAC: guestMAC})

	_, err := CreateTAP(testCtx(t), TAPConfig{Name: "ivttest0", Bridge: "ivbr0", GuestMAC: guestMAC})
	if !errors.Is(err, ErrLinkExists) || !errors.Is(err, &errdefs.Error{Code: errdefs.CodeAlreadyExists}) {
		t.Fatalf("err = %v, want ErrLinkExists (AlreadyExists)", err)
	}
	// The refusal must not have touched the first TAP.
	l := mustLink(t, "ivttest0")
	if l.Attrs().Index != first.Index || l.(*netlink.Tuntap).Queues != 1 {
		t.Errorf("existing TAP changed: index %d (was %d), queues %d", l.Attrs().Index, first.Index, l.(*netlink.Tuntap).Queues)
	}
	_, err = CreateTAP(testCtx(t), TAPConfig{Name: "ivbr0", Bridge: "ivbr0", GuestMAC: guestMAC})
	if !errors.Is(err, ErrLinkExists) || !strings.Contains(err.Error(), "bridge") {
		t.Fatalf("TAP named like the bridge: err = %v, want ErrLinkExists naming a bridge", err)
	}
}

func TestCreateTAPInvalidConfig(t *testing.T) {
	inFreshNetns(t)
	addBridge(t, "ivbr0")
	ok := TAPConfig{Name: "ivttest0", Bridge: "ivbr0", GuestMAC: guestMAC}
	for _, tc := range []struct {
		field string
		edit  func(*TAPConfig)
	}{
		{"name", func(c *TAPConfig) { c.Name = "" }},
		{"name", func(c *TAPConfig) { c.Name = "tap%d" }},
		{"name", func(c *TAPConfig) { c.Name = "a-name-much-too-long" }},
		{"bridge", func(c *TAPConfig) { c.Bridge = "br/0" }},
		{"guestMAC", func(c *TAPConfig) { c.GuestMAC = nil }},
		{"guestMAC", func(c *TAPConfig) { c.GuestMAC = net.HardwareAddr{1, 0, 0x5e, 0, 0, 1} }},
		{"queues", func(c *TAPConfig) { c.Queues = MaxQueues + 1 }},
		{"queues", func(c *TAPConfig) { c.Queues = -1 }},
		{"mtu", func(c *TAPConfig) { c.MTU = 20 }},
		{"mtu", func(c *TAPConfig) { c.MTU = 9000 }}, // above the bridge's 1500
	} {
		cfg := ok
		tc.edit(&cfg)
		_, err := CreateTAP(testCtx(t), cfg)
		if !errors.Is(err, &errdefs.Error{Code: errdefs.CodeInvalidArgument, Field: tc.field}) {
			t.Errorf("%+v: err = %v, want InvalidArgument on %s", cfg, err, tc.field)
		}
	}
	if !linkGone(t, "ivttest0") {
		t.Error("an invalid config left a TAP behind")
	}
}

func TestCreateTAPCancelledContext(t *testing.T) {
	inFreshNetns(t)
	addBridge(t, "ivbr0")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := CreateTAP(ctx, TAPConfig{Name: "ivttest0", Bridge: "ivbr0", GuestMAC: guestMAC})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	if !linkGone(t, "ivttest0") {
		t.Error("a TAP was created under a cancelled context")
	}
}

func TestRemoveTAPIsIdempotent(t *testing.T) {
	inFreshNetns(t)
	addBridge(t, "ivbr0")
	ctx := testCtx(t)
	tap := createTAP(t, TAPConfig{Name: "ivttest0", Bridge: "ivbr0", GuestMAC: guestMAC, Queues: 2})

	// As after a crash: the fds are still open somewhere, the device must go anyway.
	if err := RemoveTAP(ctx, "ivttest0"); err != nil {
		t.Fatalf("RemoveTAP: %v", err)
	}
	if !linkGone(t, "ivttest0") {
		t.Fatal("TAP still exists after RemoveTAP")
	}
	if err := RemoveTAP(ctx, "ivttest0"); err != nil {
		t.Fatalf("second RemoveTAP: %v", err)
	}
	if err := RemoveTAP(ctx, "nevercreated"); err != nil {
		t.Fatalf("RemoveTAP of a name never used: %v", err)
	}
	if err := tap.Close(); err != nil {
		t.Fatalf("Close after RemoveTAP: %v", err)
	}

	// Another kind of link under the name is not ours to delete.
	err := RemoveTAP(ctx, "ivbr0")
	if !errors.Is(err, ErrNotTAP) {
		t.Fatalf("RemoveTAP(bridge) = %v, want ErrNotTAP", err)
	}
	if linkGone(t, "ivbr0") {
		t.Fatal("RemoveTAP deleted a bridge")
	}
}

func TestHostMAC(t *testing.T) {
	for in, want := range map[string]string{
		"52:54:00:12:34:56": "fe:54:00:12:34:56",
		"fe:54:00:12:34:56": "fa:54:00:12:34:56",
		"02:00:00:00:00:01": "fe:00:00:00:00:01",
	} {
		mac, _ := net.ParseMAC(in)
		if got := HostMAC(mac).String(); got != want {
			t.Errorf("HostMAC(%s) = %s, want %s", in, got, want)
		}
		if mac.String() != in {
			t.Errorf("HostMAC changed its argument to %s", mac)
		}
	}
}
