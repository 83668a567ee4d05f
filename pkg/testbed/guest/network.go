package guest

import (
	"context"
	"fmt"
	"net"
	"os"
	"runtime"
	"syscall"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// Network is a throwaway network namespace holding one TAP device whose
// queue fds go to a guest's QEMU. Traffic to and from the guest stays in
// the namespace; the TAP disappears with its fds and the namespace with
// the test.
type Network struct {
	NS    netns.NsHandle
	TAP   string
	Files []*os.File // one per queue, for exec.Cmd.ExtraFiles
}

// NewNetwork creates the namespace, with lo up, and a non-persistent TAP
// named tap with the given number of queues, up, with hostCIDR (e.g.
// 10.0.0.1/24) on the host side when not empty. With queues 0 there is no
// TAP: a private loopback is still useful to run a QEMU whose display
// ports must not clash with anything else on the machine. It needs root;
// without it the test is skipped.
func NewNetwork(t testing.TB, tap string, queues int, hostCIDR string) *Network {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("creating a network namespace and a TAP needs root")
	}
	if _, err := os.Stat("/dev/net/tun"); err != nil && queues > 0 {
		t.Skipf("no /dev/net/tun: %v", err)
	}
	ns, err := newNamespace()
	if err != nil {
		t.Fatalf("creating a network namespace: %v", err)
	}
	t.Cleanup(func() { ns.Close() })
	n := &Network{NS: ns}
	err = n.Do(func() error {
		lo, err := netlink.LinkByName("lo")
		if err != nil {
			return err
		}
		if err := netlink.LinkSetUp(lo); err != nil {
			return err
		}
		if queues == 0 {
			return nil
		}
		n.TAP = tap
		flags := netlink.TUNTAP_NO_PI | netlink.TUNTAP_VNET_HDR
		if queues > 1 {
			flags |= netlink.TUNTAP_MULTI_QUEUE
		}
		link := &netlink.Tuntap{LinkAttrs: netlink.LinkAttrs{Name: tap}, Mode: netlink.TUNTAP_MODE_TAP,
			Flags: flags, Queues: queues, NonPersist: true}
		if err := netlink.LinkAdd(link); err != nil {
			return fmt.Errorf("creating TAP %s: %w", tap, err)
		}
		n.Files = link.Fds
		if hostCIDR != "" {
			addr, err := netlink.ParseAddr(hostCIDR)
			if err != nil {
				return err
			}
			if err := netlink.AddrAdd(link, addr); err != nil {
				return fmt.Errorf("adding %s to %s: %w", hostCIDR, tap, err)
			}
		}
		return netlink.LinkSetUp(link)
	})
	t.Cleanup(func() {
		for _, f := range n.Files {
			f.Close()
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// Do runs fn on a thread inside the namespace. Sockets fn opens stay in
// the namespace afterwards, and so do processes it starts.
func (n *Network) Do(fn func() error) error {
	return inNamespace(n.NS, fn)
}

// Dial connects to addr from inside the namespace.
func (n *Network) Dial(ctx context.Context, network, addr string) (net.Conn, error) {
	var conn net.Conn
	err := n.Do(func() error {
		var err error
		conn, err = (&net.Dialer{}).DialContext(ctx, network, addr)
		return err
	})
	return conn, err
}

func newNamespace() (netns.NsHandle, error) {
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		return netns.None(), err
	}
	defer orig.Close()
	ns, err := netns.New() // moves this thread into the new namespace
	if err != nil {
		runtime.UnlockOSThread()
		return netns.None(), err
	}
	if err := netns.Set(orig); err != nil {
		// The thread stays locked, so Go retires it instead of reusing it
		// in the wrong namespace.
		ns.Close()
		return netns.None(), err
	}
	runtime.UnlockOSThread()
	return ns, nil
}

func inNamespace(ns netns.NsHandle, fn func() error) error {
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		return err
	}
	defer orig.Close()
	if err := netns.Set(ns); err != nil {
		runtime.UnlockOSThread()
		return err
	}
	fnErr := fn()
	if err := netns.Set(orig); err != nil {
		return err // leave the thread locked: see newNamespace
	}
	runtime.UnlockOSThread()
	return fnErr
}

// Socketpair returns the two ends of a Unix stream socketpair: the host's
// as a net.Conn and the child's as a file for exec.Cmd.ExtraFiles (QMP and
// serial sockets of a QEMU started with qemu.Config fds).
func Socketpair(name string) (host net.Conn, child *os.File, err error) {
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("socketpair for %s: %w", name, err)
	}
	hostFile := os.NewFile(uintptr(fds[0]), name+"-host")
	defer hostFile.Close() // FileConn dups it
	host, err = net.FileConn(hostFile)
	if err != nil {
		syscall.Close(fds[1])
		return nil, nil, err
	}
	return host, os.NewFile(uintptr(fds[1]), name+"-child"), nil
}
