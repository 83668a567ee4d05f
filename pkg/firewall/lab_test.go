package firewall

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/infinibay/infinivirt/pkg/firewall/internal/nettest"
)

// lab is a host namespace with a bridge (the gateway, 10.0.0.254) and three
// stand-in guests A, B and C whose bridge ports are named like TAPs.
type lab struct {
	t       testing.TB
	host    *nettest.NS
	fw      *Firewall
	a, b, c *nettest.Guest
}

const gatewayIP = "10.0.0.254"

func newLab(t testing.TB, opts Options) *lab {
	t.Helper()
	fw, host := liveFirewall(t, opts)
	host.Bridge(t, "ivbr0", "02:00:00:00:00:fe", gatewayIP+"/24")
	l := &lab{t: t, host: host, fw: fw}
	l.a = nettest.AddGuest(t, host, "ivbr0", "ivtaaaa", "52:54:00:00:00:0a", "10.0.0.1/24")
	l.b = nettest.AddGuest(t, host, "ivbr0", "ivtbbbb", "52:54:00:00:00:0b", "10.0.0.2/24")
	l.c = nettest.AddGuest(t, host, "ivbr0", "ivtcccc", "52:54:00:00:00:0c", "10.0.0.3/24")
	return l
}

// vm describes a guest to the firewall, with its address known.
func (l *lab) vm(g *nettest.Guest, rules ...Rule) VM {
	id := strings.TrimPrefix(g.Port, "ivt")[:1]
	return VM{ID: id, NICs: []NIC{{Name: PrimaryNIC, TAP: g.Port, MAC: g.MAC, IPs: []netip.Addr{netip.MustParseAddr(g.IP)}}},
		RuleSet: RuleSet{Rules: rules}}
}

func (l *lab) applyVM(d Department, v VM) {
	l.t.Helper()
	if err := l.fw.ApplyVM(testCtx(l.t), d, v); err != nil {
		l.t.Fatal(err)
	}
}

// applyDept applies a department edit.
func (l *lab) applyDept(d Department, vms ...VM) {
	l.t.Helper()
	if err := l.fw.ApplyDepartment(testCtx(l.t), d, vms); err != nil {
		l.t.Fatal(err)
	}
}

// resync sets the whole state of a department and its VMs.
func (l *lab) resync(d Department, vms ...VM) {
	l.t.Helper()
	if err := l.fw.Resync(testCtx(l.t), d, vms); err != nil {
		l.t.Fatal(err)
	}
}

// ping sends one echo request and reports whether a reply came back.
func ping(from *nettest.NS, to string) bool {
	return from.Try("busybox", "ping", "-c", "1", "-W", "1", to) == nil
}

func (l *lab) wantPing(from *nettest.NS, to string, ok bool) {
	l.t.Helper()
	if got := ping(from, to); got != ok {
		l.t.Errorf("ping %s -> %s: got reply %v, want %v", from.Name, to, got, ok)
	}
}

// listen starts a TCP listener in g that greets every client.
func listen(t testing.TB, g *nettest.NS, port int) {
	t.Helper()
	var ln net.Listener
	err := g.Do(func() (err error) {
		ln, err = net.Listen("tcp4", fmt.Sprintf(":%d", port))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_, _ = c.Write([]byte("hello\n"))
			c.Close()
		}
	}()
}

// connect opens a TCP connection from g and reads the greeting.
func connect(g *nettest.NS, addr string) error {
	var c net.Conn
	err := g.Do(func() (err error) {
		c, err = net.DialTimeout("tcp4", addr, 1500*time.Millisecond)
		return err
	})
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	buf := make([]byte, 6)
	if _, err := c.Read(buf); err != nil {
		return err
	}
	if string(buf) != "hello\n" {
		return errors.New("unexpected greeting " + string(buf))
	}
	return nil
}

func (l *lab) wantConnect(from *nettest.NS, addr string, ok bool) {
	l.t.Helper()
	err := connect(from, addr)
	if (err == nil) != ok {
		l.t.Errorf("connect %s -> %s: err %v, want success %v", from.Name, addr, err, ok)
	}
}
