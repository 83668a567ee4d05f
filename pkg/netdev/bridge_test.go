package netdev

import (
	"encoding/json"
	"errors"
	"net"
	"net/netip"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"

	"github.com/infinibay/infinivirt/pkg/errdefs"
)

var (
	gw4 = netip.MustParsePrefix("10.77.0.1/24")
	gw6 = netip.MustParsePrefix("fd00:77::1/64")
	// lowMAC sorts below any derived bridge MAC, so an unpinned bridge
	// would take it as its own.
	lowMAC = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x01}
)

func ensureBridge(t *testing.T, cfg BridgeConfig) BridgeInfo {
	t.Helper()
	info, err := EnsureBridge(testCtx(t), cfg)
	if err != nil {
		t.Fatalf("EnsureBridge(%+v): %v", cfg, err)
	}
	return info
}

func TestEnsureBridgeCreatesAndIsIdempotent(t *testing.T) {
	inFreshNetns(t)
	cfg := BridgeConfig{Name: "ivdept0", MTU: 1400, Addresses: []netip.Prefix{gw4, gw6}}
	first := ensureBridge(t, cfg)

	br := mustBridge(t, "ivdept0")
	if got, want := br.HardwareAddr.String(), BridgeMAC("ivdept0").String(); got != want || first.MAC.String() != want {
		t.Errorf("MAC %s (reported %s), want derived %s", got, first.MAC, want)
	}
	if br.MTU != 1400 || first.MTU != 1400 {
		t.Errorf("MTU %d (reported %d), want 1400", br.MTU, first.MTU)
	}
	if br.Attrs().Flags&net.FlagUp == 0 || !first.Up {
		t.Error("bridge is not up")
	}
	for _, p := range []netip.Prefix{gw4, gw6} {
		if !slices.Contains(first.Addresses, p) {
			t.Errorf("addresses %v lack %v", first.Addresses, p)
		}
	}
	if first.Name != "ivdept0" || first.Index != br.Index || len(first.Ports) != 0 {
		t.Errorf("info %+v does not describe the new bridge", first)
	}

	again := ensureBridge(t, cfg)
	if again.Index != first.Index || again.MAC.String() != first.MAC.String() || again.MTU != first.MTU ||
		countPrefix(again.Addresses, gw4) != 1 || countPrefix(again.Addresses, gw6) != 1 {
		t.Errorf("second EnsureBridge changed the bridge:\n first %+v\n again %+v", first, again)
	}
}

func countPrefix(ps []netip.Prefix, p netip.Prefix) int {
	n := 0
	for _, q := range ps {
		if q == p {
			n++
		}
	}
	return n
}

func TestBridgeMACStaysFixedAsPortsComeAndGo(t *testing.T) {
	inFreshNetns(t)
	info := ensureBridge(t, BridgeConfig{Name: "ivdept0"})
	want := info.MAC.String()

	v := addVeth(t, "port0", lowMAC)
	if err := netlink.LinkSetMaster(v, mustBridge(t, "ivdept0")); err != nil {
		t.Fatal(err)
	}
	tap := createTAP(t, TAPConfig{Name: "ivttest0", Bridge: "ivdept0", GuestMAC: guestMAC})
	if got := mustBridge(t, "ivdept0").HardwareAddr.String(); got != want {
		t.Fatalf("with ports attached the bridge MAC became %s, want %s", got, want)
	}
	if err := tap.Close(); err != nil {
		t.Fatal(err)
	}
	if err := netlink.LinkDel(v); err != nil {
		t.Fatal(err)
	}
	if got := mustBridge(t, "ivdept0").HardwareAddr.String(); got != want {
		t.Fatalf("after the ports left the bridge MAC became %s, want %s", got, want)
	}
}

func TestEnsureBridgeAdoptsAndPinsExistingBridge(t *testing.T) {
	inFreshNetns(t)
	addBridge(t, "opbr0") // made elsewhere: random MAC that follows its ports
	fixed := net.HardwareAddr{0x0a, 0x11, 0x22, 0x33, 0x44, 0x55}
	info := ensureBridge(t, BridgeConfig{Name: "opbr0", MAC: fixed, Addresses: []netip.Prefix{gw4}})
	if info.MAC.String() != fixed.String() || !slices.Contains(info.Addresses, gw4) {
		t.Fatalf("adopted bridge: %+v, want MAC %s and %v", info, fixed, gw4)
	}
	v := addVeth(t, "port0", lowMAC)
	if err := netlink.LinkSetMaster(v, mustBridge(t, "opbr0")); err != nil {
		t.Fatal(err)
	}
	if got := mustBridge(t, "opbr0").HardwareAddr.String(); got != fixed.String() {
		t.Fatalf("adopted bridge took its port's MAC: %s, want %s", got, fixed)
	}
}

func TestEnsureBridgeRefusesOtherKinds(t *testing.T) {
	inFreshNetns(t)
	addVeth(t, "notbr", nil)
	_, err := EnsureBridge(testCtx(t), BridgeConfig{Name: "notbr"})
	if !errors.Is(err, ErrNotBridge) || !errors.Is(err, &errdefs.Error{Code: errdefs.CodeFailedPrecondition}) {
		t.Fatalf("err = %v, want ErrNotBridge (FailedPrecondition)", err)
	}
	for _, cfg := range []BridgeConfig{
		{Name: "bad name"},
		{Name: "ivdept0", MAC: net.HardwareAddr{0x01, 0, 0, 0, 0, 1}},
		{Name: "ivdept0", MTU: 10},
		{Name: "ivdept0", Addresses: []netip.Prefix{netip.MustParsePrefix("224.0.0.1/4")}},
		{Name: "ivdept0", Addresses: []netip.Prefix{{}}},
	} {
		if _, err := EnsureBridge(testCtx(t), cfg); !errors.Is(err, &errdefs.Error{Code: errdefs.CodeInvalidArgument}) {
			t.Errorf("%+v: err = %v, want InvalidArgument", cfg, err)
		}
	}
	if !linkGone(t, "ivdept0") {
		t.Error("an invalid config created a bridge")
	}
}

func TestDeleteBridgeRefusesWhilePortsAreAttached(t *testing.T) {
	inFreshNetns(t)
	ctx := testCtx(t)
	ensureBridge(t, BridgeConfig{Name: "ivdept0"})
	createTAP(t, TAPConfig{Name: "ivttest0", Bridge: "ivdept0", GuestMAC: guestMAC})

	err := DeleteBridge(ctx, "ivdept0", DeleteBridgeOptions{})
	var le *LinkError
	if !errors.Is(err, ErrBridgeBusy) || !errors.As(err, &le) || !slices.Equal(le.Ports, []string{"ivttest0"}) {
		t.Fatalf("err = %v, want ErrBridgeBusy listing ivttest0", err)
	}
	if !strings.Contains(err.Error(), "ivttest0") {
		t.Errorf("message %q does not name the port", err)
	}
	if linkGone(t, "ivdept0") {
		t.Fatal("bridge deleted despite the refusal")
	}

	if err := DeleteBridge(ctx, "ivdept0", DeleteBridgeOptions{Force: true}); err != nil {
		t.Fatalf("forced DeleteBridge: %v", err)
	}
	if !linkGone(t, "ivdept0") {
		t.Fatal("bridge still exists after forced delete")
	}
	if l := mustLink(t, "ivttest0"); l.Attrs().MasterIndex != 0 {
		t.Errorf("TAP still has master %d", l.Attrs().MasterIndex)
	}
	if err := DeleteBridge(ctx, "ivdept0", DeleteBridgeOptions{}); err != nil {
		t.Fatalf("DeleteBridge of a missing bridge: %v", err)
	}
}

func TestDeleteBridgeWithoutPortsAndOtherKinds(t *testing.T) {
	inFreshNetns(t)
	ctx := testCtx(t)
	ensureBridge(t, BridgeConfig{Name: "ivdept0"})
	if err := DeleteBridge(ctx, "ivdept0", DeleteBridgeOptions{}); err != nil {
		t.Fatalf("DeleteBridge: %v", err)
	}
	if !linkGone(t, "ivdept0") {
		t.Fatal("bridge still exists")
	}
	addVeth(t, "notbr", nil)
	if err := DeleteBridge(ctx, "notbr", DeleteBridgeOptions{Force: true}); !errors.Is(err, ErrNotBridge) {
		t.Fatalf("DeleteBridge(veth) = %v, want ErrNotBridge", err)
	}
	if linkGone(t, "notbr") {
		t.Fatal("DeleteBridge deleted a veth")
	}
}

func TestListBridges(t *testing.T) {
	inFreshNetns(t)
	ctx := testCtx(t)
	if got, err := ListBridges(ctx); err != nil || len(got) != 0 {
		t.Fatalf("empty namespace: %v, %v", got, err)
	}
	ensureBridge(t, BridgeConfig{Name: "ivdept1", Addresses: []netip.Prefix{gw4}})
	ensureBridge(t, BridgeConfig{Name: "ivdept0", MTU: 9000})
	addVeth(t, "port0", nil)
	if err := netlink.LinkSetMaster(mustLink(t, "port0"), mustBridge(t, "ivdept1")); err != nil {
		t.Fatal(err)
	}
	createTAP(t, TAPConfig{Name: "ivttest0", Bridge: "ivdept1", GuestMAC: guestMAC})

	got, err := ListBridges(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].Name != "ivdept0" || got[1].Name != "ivdept1" {
		t.Fatalf("ListBridges = %+v, want ivdept0 and ivdept1 in order", got)
	}
	b0, b1 := got[0], got[1]
	if b0.MTU != 9000 || len(b0.Ports) != 0 || b0.MAC.String() != BridgeMAC("ivdept0").String() || !b0.Up {
		t.Errorf("ivdept0: %+v", b0)
	}
	if !slices.Equal(b1.Ports, []string{"ivttest0", "port0"}) || !slices.Contains(b1.Addresses, gw4) ||
		b1.MAC.String() != BridgeMAC("ivdept1").String() || b1.Index != mustLink(t, "ivdept1").Attrs().Index {
		t.Errorf("ivdept1: %+v", b1)
	}
}

func TestBridgeMAC(t *testing.T) {
	a, b := BridgeMAC("ivdept0"), BridgeMAC("ivdept0")
	if a.String() != b.String() {
		t.Fatalf("not stable: %s vs %s", a, b)
	}
	if BridgeMAC("ivdept1").String() == a.String() {
		t.Fatal("two names gave the same MAC")
	}
	if err := validUnicastMAC(a); err != nil || a[0]&2 == 0 {
		t.Fatalf("%s is not a locally administered unicast address: %v", a, err)
	}
}

func TestRetryInterrupted(t *testing.T) {
	calls := 0
	v, err := retryInterrupted(func() (int, error) {
		calls++
		if calls < 3 {
			return -1, netlink.ErrDumpInterrupted
		}
		return 42, nil
	})
	if err != nil || v != 42 || calls != 3 {
		t.Fatalf("got %d, %v after %d calls; want 42 after 3", v, err, calls)
	}
	calls = 0
	v, err = retryInterrupted(func() (int, error) { calls++; return 7, netlink.ErrDumpInterrupted })
	if !errors.Is(err, netlink.ErrDumpInterrupted) || v != 0 || calls != dumpAttempts {
		t.Fatalf("always interrupted: got %d, %v after %d calls", v, err, calls)
	}
}

func TestValidLinkName(t *testing.T) {
	for _, ok := range []string{"br0", "ivt0f8fad5bd9cb", "a", "dept-1.v_2"} {
		if err := validLinkName(ok); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
	for _, bad := range []string{"", ".", "..", "sixteen-chars-xx", "a b", "a/b", "a:b", "tap%d", "a\tb", "a\x00"} {
		if err := validLinkName(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func FuzzValidLinkName(f *testing.F) {
	for _, s := range []string{"br0", "tap%d", "..", "a b", "sixteen-chars-xx", "\xff\xfe"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if validLinkName(s) != nil {
			return
		}
		if len(s) == 0 || len(s) > 15 || s == "." || s == ".." || strings.ContainsAny(s, "/:% \t\n\r\v\f\x00") {
			t.Fatalf("accepted %q, which the kernel refuses or TUNSETIFF would expand", s)
		}
	})
}

// The API serves BridgeInfo as JSON: the MAC in its colon form, not the
// base64 encoding/json gives a byte slice.
func TestBridgeInfoJSON(t *testing.T) {
	in := BridgeInfo{Name: "ivdept0", Index: 7, MAC: BridgeMAC("ivdept0"), MTU: 1500, Up: true,
		Ports: []string{"ivttest0"}, Addresses: []netip.Prefix{gw4}}
	b, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	if want := `"mac":"` + in.MAC.String() + `"`; !strings.Contains(string(b), want) || !strings.Contains(string(b), `"name":"ivdept0"`) {
		t.Errorf("JSON %s lacks %s", b, want)
	}
	var out BridgeInfo
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(out, in) {
		t.Errorf("round trip gave %+v, want %+v", out, in)
	}
}

// A bridge EnsureBridge made is removed again when a later step fails; one
// it adopted stays.
func TestEnsureBridgeRollsBackWhatItCreated(t *testing.T) {
	inFreshNetns(t)
	// New links in this namespace refuse IPv6 addresses. The setting is the
	// namespace's; it is put back all the same.
	const knob = "/proc/sys/net/ipv6/conf/default/disable_ipv6"
	old, err := os.ReadFile(knob)
	if err != nil {
		t.Skipf("no IPv6 settings: %v", err)
	}
	if err := os.WriteFile(knob, []byte("1"), 0o644); err != nil {
		t.Skipf("cannot disable IPv6 for new links: %v", err)
	}
	t.Cleanup(func() { _ = os.WriteFile(knob, old, 0o644) })
	cfg := BridgeConfig{Name: "ivdept0", Addresses: []netip.Prefix{gw4, gw6}}
	_, err = EnsureBridge(testCtx(t), cfg)
	var op *OpError
	if !errors.As(err, &op) || !strings.Contains(op.Op, "add address "+gw6.String()) {
		t.Fatalf("err = %v, want an OpError adding %v", err, gw6)
	}
	if !linkGone(t, "ivdept0") {
		t.Error("the bridge EnsureBridge created was left behind")
	}

	addBridge(t, "opbr0")
	cfg.Name = "opbr0"
	if _, err := EnsureBridge(testCtx(t), cfg); err == nil {
		t.Fatal("adding an IPv6 address where IPv6 is off succeeded")
	}
	if linkGone(t, "opbr0") {
		t.Error("EnsureBridge deleted a bridge it had adopted")
	}
}
