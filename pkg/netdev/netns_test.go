package netdev

import (
	"context"
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"runtime"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// inFreshNetns moves the calling test goroutine's OS thread into a new,
// empty network namespace for the rest of the test. Call it first, so its
// cleanup runs last. The thread is never unlocked: it ends with the test
// goroutine, so no other goroutine can inherit the namespace.
func inFreshNetns(tb testing.TB) {
	tb.Helper()
	if os.Geteuid() != 0 {
		tb.Skip("needs root to create network namespaces and TAP devices")
	}
	if _, err := os.Stat("/dev/net/tun"); err != nil {
		tb.Skipf("no TUN/TAP support: %v", err)
	}
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		tb.Fatalf("read current netns: %v", err)
	}
	ns, err := netns.New()
	if err != nil {
		orig.Close()
		tb.Skipf("cannot create a network namespace: %v", err)
	}
	tb.Cleanup(func() {
		if err := netns.Set(orig); err != nil {
			tb.Errorf("restore netns: %v", err)
		}
		ns.Close()
		orig.Close()
	})
}

func testCtx(tb testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	tb.Cleanup(cancel)
	return ctx
}

// addBridge makes a plain bridge behind the package's back, as an operator
// would, with no fixed address.
func addBridge(tb testing.TB, name string) *netlink.Bridge {
	tb.Helper()
	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: name}}
	if err := netlink.LinkAdd(br); err != nil {
		tb.Fatalf("add bridge %s: %v", name, err)
	}
	if err := netlink.LinkSetUp(br); err != nil {
		tb.Fatalf("set %s up: %v", name, err)
	}
	return mustBridge(tb, name)
}

// addVeth makes a veth pair, a link that is not a bridge, with a chosen
// address on the first end.
func addVeth(tb testing.TB, name string, mac net.HardwareAddr) netlink.Link {
	tb.Helper()
	v := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: name, HardwareAddr: mac}, PeerName: name + "p"}
	if err := netlink.LinkAdd(v); err != nil {
		tb.Fatalf("add veth %s: %v", name, err)
	}
	return mustLink(tb, name)
}

func mustLink(tb testing.TB, name string) netlink.Link {
	tb.Helper()
	l, err := netlink.LinkByName(name)
	if err != nil {
		tb.Fatalf("look up %s: %v", name, err)
	}
	return l
}

func mustBridge(tb testing.TB, name string) *netlink.Bridge {
	tb.Helper()
	br, ok := mustLink(tb, name).(*netlink.Bridge)
	if !ok {
		tb.Fatalf("%s is not a bridge", name)
	}
	return br
}

func linkGone(tb testing.TB, name string) bool {
	tb.Helper()
	_, err := netlink.LinkByName(name)
	if err == nil {
		return false
	}
	if !isNotFound(err) {
		tb.Fatalf("look up %s: %v", name, err)
	}
	return true
}

// ipLinkDetails asks iproute2, in this thread's namespace, for the link's
// kind-specific data, as an operator would see it with `ip -d link`.
func ipLinkDetails(tb testing.TB, name string) map[string]any {
	tb.Helper()
	if _, err := exec.LookPath("ip"); err != nil {
		tb.Skip("iproute2 is not installed")
	}
	out, err := exec.Command("ip", "-d", "-j", "link", "show", "dev", name).Output()
	if err != nil {
		tb.Fatalf("ip -d link show %s: %v", name, err)
	}
	var links []struct {
		LinkInfo struct {
			Kind string         `json:"info_kind"`
			Data map[string]any `json:"info_data"`
		} `json:"linkinfo"`
	}
	if err := json.Unmarshal(out, &links); err != nil || len(links) != 1 {
		tb.Fatalf("ip -j output %q: %v", out, err)
	}
	d := links[0].LinkInfo.Data
	d["kind"] = links[0].LinkInfo.Kind
	return d
}
