package firewall

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/infinibay/infinivirt/pkg/firewall/internal/nettest"
	"github.com/infinibay/infinivirt/pkg/testbed/guest"
)

// guestBoot bounds booting three TCG guests at once on a shared machine.
const guestBoot = 4 * time.Minute

// realGuest is a QEMU test guest on a TAP of the lab bridge.
type realGuest struct {
	name, tap, mac, ip string
	console            *guest.Console
}

// bootGuests boots one test guest per spec on TAPs plugged into bridge in
// host, with QEMU started inside host's namespace (-accel tcg, no vhost).
// QEMU lives until ctx ends or the test cleans up; booting has guestBoot.
func bootGuests(t *testing.T, ctx context.Context, host *nettest.NS, bridge string, specs []*realGuest, listen []int) {
	t.Helper()
	qemuBin, err := exec.LookPath("qemu-system-x86_64")
	if err != nil {
		t.Skip("qemu-system-x86_64 is not installed (Debian package qemu-system-x86)")
	}
	if _, err := os.Stat("/dev/net/tun"); err != nil {
		t.Skipf("no /dev/net/tun for the guests' TAPs: %v", err)
	}
	img, err := guest.Ensure(ctx, "") // built once and cached for every test process
	if err != nil {
		t.Fatalf("test guest image: %v", err)
	}
	for _, g := range specs {
		host.RunContext(t, ctx, "ip", "tuntap", "add", "dev", g.tap, "mode", "tap")
		host.RunContext(t, ctx, "ip", "link", "set", g.tap, "master", bridge)
		host.RunContext(t, ctx, "ip", "link", "set", g.tap, "up")
		opts := guest.Options{IP: g.ip + "/24", Gateway: gatewayIP, Host: g.name, Listen: listen}
		serialHost, serialChild, err := guest.Socketpair("serial-" + g.name)
		if err != nil {
			t.Fatal(err)
		}
		cmd := exec.CommandContext(ctx, "ip", "netns", "exec", host.Name, qemuBin,
			"-machine", "q35", "-accel", "tcg", "-m", "128", "-smp", "1", "-nodefaults", "-no-reboot",
			"-display", "none", "-monitor", "none",
			"-kernel", img.Kernel, "-initrd", img.Initrd, "-append", opts.Cmdline(),
			"-chardev", "socket,id=serial0,fd=3", "-serial", "chardev:serial0",
			"-netdev", "tap,id=n0,ifname="+g.tap+",script=no,downscript=no,vhost=off",
			"-device", "virtio-net-pci,netdev=n0,mac="+g.mac)
		cmd.ExtraFiles = []*os.File{serialChild}
		var stderr strings.Builder
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		serialChild.Close()
		exited := make(chan struct{})
		go func() { _ = cmd.Wait(); close(exited) }()
		g := g
		g.console = guest.NewConsole(serialHost)
		t.Cleanup(func() {
			_ = cmd.Process.Kill() // by PID: ip netns exec became QEMU
			<-exited
			serialHost.Close()
			if t.Failed() {
				t.Logf("guest %s: QEMU stderr:\n%s\nconsole:\n%s", g.name, stderr.String(), g.console.Transcript())
			}
		})
	}
	bootCtx, cancel := context.WithTimeout(ctx, guestBoot)
	defer cancel()
	var wg sync.WaitGroup
	errs := make([]error, len(specs))
	for i, g := range specs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			opts := guest.Options{IP: g.ip + "/24", Host: g.name}
			_, errs[i] = g.console.WaitFor(bootCtx, opts.ReadyLine())
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("guest %s did not come up: %v", specs[i].name, err)
		}
	}
}

// run runs a shell command on the guest's serial console.
func (g *realGuest) run(t *testing.T, ctx context.Context, cmd string) (string, int) {
	t.Helper()
	out, rc, err := g.console.Run(ctx, cmd)
	if err != nil {
		t.Fatalf("guest %s: %s: %v", g.name, cmd, err)
	}
	return out, rc
}

func (g *realGuest) wantPing(t *testing.T, ctx context.Context, to string, ok bool) {
	t.Helper()
	_, rc := g.run(t, ctx, "ping -c 1 -W 2 "+to+" >/dev/null 2>&1")
	if (rc == 0) != ok {
		t.Errorf("guest %s: ping %s: rc %d, want success %v", g.name, to, rc, ok)
	}
}

// wantTCP connects with busybox nc and expects the listener's "OK <port>".
func (g *realGuest) wantTCP(t *testing.T, ctx context.Context, to string, port int, ok bool) {
	t.Helper()
	out, _ := g.run(t, ctx, fmt.Sprintf("nc -w 2 %s %d </dev/null 2>/dev/null", to, port))
	got := strings.Contains(out, fmt.Sprintf("OK %d", port))
	if got != ok {
		t.Errorf("guest %s: TCP to %s:%d answered %q, want success %v", g.name, to, port, out, ok)
	}
}

func (g *realGuest) vm(rules ...Rule) VM {
	return VM{ID: g.name, NICs: []NIC{{Name: PrimaryNIC, TAP: g.tap, MAC: g.mac, IPs: []netip.Addr{netip.MustParseAddr(g.ip)}}},
		RuleSet: RuleSet{Rules: rules}}
}

// TestRealGuestsAcceptance boots three real guests A, B and C on one
// bridge, with the host at the gateway address, and walks the issue's
// acceptance scenarios with their traffic.
func TestRealGuestsAcceptance(t *testing.T) {
	if testing.Short() {
		t.Skip("boots three QEMU guests; skipped with -short")
	}
	fw, host := liveFirewall(t, Options{})
	ctx, cancel := context.WithTimeout(context.Background(), guestBoot+5*time.Minute)
	defer cancel()
	host.Bridge(t, "ivbr0", "02:00:00:00:00:fe", gatewayIP+"/24")
	a := &realGuest{name: "a", tap: "ivtga", mac: "52:54:00:00:01:0a", ip: "10.0.0.11"}
	b := &realGuest{name: "b", tap: "ivtgb", mac: "52:54:00:00:01:0b", ip: "10.0.0.12"}
	c := &realGuest{name: "c", tap: "ivtgc", mac: "52:54:00:00:01:0c", ip: "10.0.0.13"}
	bootGuests(t, ctx, host, "ivbr0", []*realGuest{a, b, c}, []int{22, 23})

	apply := func(d Department, vms ...VM) { // the whole state, VM rules included
		t.Helper()
		if err := fw.Resync(ctx, d, vms); err != nil {
			t.Fatal(err)
		}
	}
	open := Department{ID: "eng", Policy: allowAll}
	apply(open, a.vm(), b.vm(), c.vm())
	a.wantPing(t, ctx, b.ip, true)

	t.Run("a VM rule on B drops ICMP from A", func(t *testing.T) {
		fromA := Rule{ID: "no-icmp-from-a", Action: Drop, Direction: In, Priority: DefaultPriority, Protocol: ICMP, SrcIPAddr: a.ip}
		apply(open, a.vm(), b.vm(fromA), c.vm())
		a.wantPing(t, ctx, b.ip, false)
		c.wantPing(t, ctx, b.ip, true)
	})

	t.Run("BLOCK_ALL with TCP 22 accepted into B", func(t *testing.T) {
		d := Department{ID: "eng", Policy: DepartmentPolicy{BlockAll, AllowOutbound}}
		ssh := Rule{ID: "ssh-in", Action: Accept, Direction: In, Priority: DefaultPriority, Protocol: TCP, DstPortStart: 22}
		apply(d, a.vm(), b.vm(ssh), c.vm())
		a.wantTCP(t, ctx, b.ip, 22, true)
		a.wantTCP(t, ctx, b.ip, 23, false)
	})

	t.Run("a guest-to-gateway ping is blocked by an OUT drop rule", func(t *testing.T) {
		noGW := Rule{ID: "no-gw", Action: Drop, Direction: Out, Priority: DefaultPriority, Protocol: ICMP, DstIPAddr: gatewayIP}
		apply(open, a.vm(noGW), b.vm(), c.vm())
		a.wantPing(t, ctx, gatewayIP, false)
		b.wantPing(t, ctx, gatewayIP, true)
		a.wantPing(t, ctx, b.ip, true)
	})

	t.Run("a department rule reaches all three VMs in one batch; an override wins for its traffic only", func(t *testing.T) {
		d := open
		d.RuleSet.Rules = []Rule{
			{ID: "no-ping", Action: Drop, Direction: In, Priority: DefaultPriority, Protocol: ICMP},
			{ID: "no-23", Action: Drop, Direction: In, Priority: DefaultPriority, Protocol: TCP, DstPortStart: 23},
		}
		before := fw.changes.Load()
		if err := fw.ApplyDepartment(ctx, d, []VM{a.vm(), b.vm(), c.vm()}); err != nil {
			t.Fatal(err)
		}
		if n := fw.changes.Load() - before; n != 1 {
			t.Errorf("department change took %d batches, want 1", n)
		}
		a.wantPing(t, ctx, b.ip, false)
		b.wantPing(t, ctx, c.ip, false)
		c.wantPing(t, ctx, a.ip, false)
		a.wantTCP(t, ctx, c.ip, 23, false)

		pingOK := Rule{ID: "ping-ok", Action: Accept, Direction: In, Priority: 900, Protocol: ICMP, OverridesDept: true}
		if err := fw.ApplyVM(ctx, d, c.vm(pingOK)); err != nil {
			t.Fatal(err)
		}
		a.wantPing(t, ctx, c.ip, true)
		a.wantPing(t, ctx, b.ip, false)
		a.wantTCP(t, ctx, c.ip, 23, false)
		a.wantTCP(t, ctx, c.ip, 22, true)
	})

	t.Run("a forged source MAC is dropped and counted", func(t *testing.T) {
		apply(open, a.vm(), b.vm(), c.vm())
		before, err := fw.Counters(ctx, "a", PrimaryNIC)
		if err != nil {
			t.Fatal(err)
		}
		a.run(t, ctx, "ip link set eth0 address 52:54:00:00:01:99")
		a.wantPing(t, ctx, b.ip, false)
		after, err := fw.Counters(ctx, "a", PrimaryNIC)
		if err != nil {
			t.Fatal(err)
		}
		if after[CounterSpoofMAC] <= before[CounterSpoofMAC] {
			t.Errorf("spoof-mac counter %d -> %d, want it to grow", before[CounterSpoofMAC], after[CounterSpoofMAC])
		}
		a.run(t, ctx, "ip link set eth0 address "+a.mac)
		a.wantPing(t, ctx, b.ip, true)
	})

	t.Run("a failed batch leaves the VM dropped", func(t *testing.T) {
		fw.failBatch = func(op string) bool { return op == "apply-vm" }
		defer func() { fw.failBatch = nil }()
		if err := fw.ApplyVM(ctx, open, a.vm()); err == nil {
			t.Fatal("injected failure did not fail the apply")
		}
		a.wantPing(t, ctx, b.ip, false)
		b.wantPing(t, ctx, c.ip, true)
	})
}
