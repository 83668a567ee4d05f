// Package nettest builds throwaway network namespaces, bridges and veth
// "guests" for the firewall's live tests, and removes them when the test
// ends, also when it fails.
package nettest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// cmdTimeout bounds every command a helper runs.
const cmdTimeout = 30 * time.Second

// NS is a named network namespace.
type NS struct {
	Name string
	file *os.File
}

// Require skips the test unless it runs as root with iproute2 present.
func Require(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to create network namespaces")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("needs iproute2 (ip) to create network namespaces")
	}
}

func randomSuffix() string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// New creates a namespace named "<prefix>-<random>" with lo up, deleted at
// the end of the test.
func New(t testing.TB, prefix string) *NS {
	t.Helper()
	Require(t)
	name := prefix + "-" + randomSuffix()
	Run(t, "ip", "netns", "add", name)
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "delete", name).Run() })
	f, err := os.Open("/run/netns/" + name)
	if err != nil {
		t.Fatalf("open netns %s: %v", name, err)
	}
	t.Cleanup(func() { f.Close() })
	ns := &NS{Name: name, file: f}
	ns.Run(t, "ip", "link", "set", "lo", "up")
	return ns
}

// Fd is the namespace's file descriptor, valid until the test ends.
func (n *NS) Fd() int { return int(n.file.Fd()) }

// Run runs a command on the host and fails the test on error.
func Run(t testing.TB, name string, args ...string) string {
	t.Helper()
	return run(t, context.Background(), name, args...)
}

func run(t testing.TB, ctx context.Context, name string, args ...string) string {
	t.Helper()
	out, err := OutputContext(ctx, name, args...)
	if err != nil {
		t.Fatalf("%s %s: %v", name, strings.Join(args, " "), err)
	}
	return out
}

// Output runs a command with cmdTimeout and returns its stdout; the error
// carries stderr.
func Output(name string, args ...string) (string, error) {
	return OutputContext(context.Background(), name, args...)
}

// OutputContext is Output for a caller whose ctx may end the command sooner.
func OutputContext(ctx context.Context, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, cmdTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return string(out), fmt.Errorf("%w: %s", err, strings.TrimSpace(stderr.String()))
	}
	return string(out), nil
}

// Run runs a command inside the namespace and fails the test on error.
func (n *NS) Run(t testing.TB, args ...string) string {
	t.Helper()
	return n.RunContext(t, context.Background(), args...)
}

// RunContext is Run for a caller whose ctx may end the command sooner.
func (n *NS) RunContext(t testing.TB, ctx context.Context, args ...string) string {
	t.Helper()
	return run(t, ctx, "ip", append([]string{"netns", "exec", n.Name}, args...)...)
}

// Try runs a command inside the namespace and reports whether it succeeded.
func (n *NS) Try(args ...string) error {
	_, err := Output("ip", append([]string{"netns", "exec", n.Name}, args...)...)
	return err
}

// Do runs fn on an OS thread that has entered the namespace. Sockets fn
// creates belong to the namespace and stay usable after Do returns.
func (n *NS) Do(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		// The thread is not unlocked if restoring fails: Go then discards it.
		orig, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			errc <- err
			return
		}
		defer orig.Close()
		if err := unix.Setns(int(n.file.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("enter netns %s: %w", n.Name, err)
			return
		}
		ferr := fn()
		if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("leave netns %s: %w", n.Name, err)
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// Bridge creates a bridge with a fixed MAC and an address in ns.
func (n *NS) Bridge(t testing.TB, name, mac, cidr string) {
	t.Helper()
	n.Run(t, "ip", "link", "add", name, "address", mac, "type", "bridge")
	if cidr != "" {
		n.Run(t, "ip", "addr", "add", cidr, "dev", name)
	}
	n.Run(t, "ip", "link", "set", name, "up")
}

// Guest is a stand-in VM: its own namespace with eth0, whose peer is a
// bridge port named like the VM's TAP.
type Guest struct {
	*NS
	Port string // the bridge port (the "TAP")
	MAC  string
	IP   string // without prefix
}

// AddGuest creates a guest namespace with eth0 (mac, cidr) and plugs its
// peer, named port, into bridge in host.
func AddGuest(t testing.TB, host *NS, bridge, port, mac, cidr string) *Guest {
	t.Helper()
	g := New(t, "ivfwg")
	host.Run(t, "ip", "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", g.Name)
	host.Run(t, "ip", "link", "set", port, "master", bridge)
	host.Run(t, "ip", "link", "set", port, "up")
	g.Run(t, "ip", "link", "set", "eth0", "address", mac)
	g.Run(t, "ip", "addr", "add", cidr, "dev", "eth0")
	g.Run(t, "ip", "link", "set", "eth0", "up")
	return &Guest{NS: g, Port: port, MAC: mac, IP: strings.SplitN(cidr, "/", 2)[0]}
}

// AddNIC gives the guest another interface, ifname (mac, cidr), whose
// peer, named port, is plugged into bridge in host.
func (g *Guest) AddNIC(t testing.TB, host *NS, bridge, port, ifname, mac, cidr string) {
	t.Helper()
	host.Run(t, "ip", "link", "add", port, "type", "veth", "peer", "name", ifname, "netns", g.Name)
	host.Run(t, "ip", "link", "set", port, "master", bridge)
	host.Run(t, "ip", "link", "set", port, "up")
	g.Run(t, "ip", "link", "set", ifname, "address", mac)
	g.Run(t, "ip", "addr", "add", cidr, "dev", ifname)
	g.Run(t, "ip", "link", "set", ifname, "up")
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// rawSocket opens an AF_PACKET socket bound to ifname inside n.
func (n *NS) rawSocket(ifname string) (int, error) {
	fd := -1
	err := n.Do(func() error {
		ifi, err := net.InterfaceByName(ifname)
		if err != nil {
			return err
		}
		s, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, int(htons(unix.ETH_P_ALL)))
		if err != nil {
			return err
		}
		if err := unix.Bind(s, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: ifi.Index}); err != nil {
			unix.Close(s)
			return err
		}
		fd = s
		return nil
	})
	return fd, err
}

// SendFrame sends one Ethernet frame, as built by the caller, out of ifname.
func (n *NS) SendFrame(ifname string, frame []byte) error {
	fd, err := n.rawSocket(ifname)
	if err != nil {
		return fmt.Errorf("raw socket on %s in %s: %w", ifname, n.Name, err)
	}
	defer unix.Close(fd)
	_, err = unix.Write(fd, frame)
	return err
}

// Capture receives every frame that reaches an interface.
type Capture struct{ fd int }

// Capture starts receiving the frames of ifname in n.
func (n *NS) Capture(ifname string) (*Capture, error) {
	fd, err := n.rawSocket(ifname)
	if err != nil {
		return nil, fmt.Errorf("raw socket on %s in %s: %w", ifname, n.Name, err)
	}
	return &Capture{fd: fd}, nil
}

// Wait reports whether a frame for which match is true arrives within d.
func (c *Capture) Wait(match func(frame []byte) bool, d time.Duration) bool {
	end := time.Now().Add(d)
	buf := make([]byte, 65536)
	for {
		left := time.Until(end)
		if left <= 0 {
			return false
		}
		tv := unix.NsecToTimeval(left.Nanoseconds())
		if err := unix.SetsockoptTimeval(c.fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
			return false
		}
		n, _, err := unix.Recvfrom(c.fd, buf, 0)
		if err != nil {
			if errors.Is(err, unix.EINTR) {
				continue
			}
			return false
		}
		if match(buf[:n]) {
			return true
		}
	}
}

// Close stops the capture.
func (c *Capture) Close() { unix.Close(c.fd) }
