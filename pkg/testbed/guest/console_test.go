package guest_test

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/infinibay/infinivirt/pkg/testbed/guest"
)

func TestConsoleWaitForConsumesInOrder(t *testing.T) {
	host, vm := net.Pipe()
	defer host.Close()
	c := guest.NewConsole(host)
	go func() {
		defer vm.Close()
		// A failed write shows as a missing line below.
		if _, err := vm.Write([]byte("boot\r\nTESTGUEST READY host=a ip=none\r\n")); err != nil {
			return
		}
		_, _ = vm.Write([]byte("TESTGUEST READY host=a ip=none\r\n"))
	}()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	first, err := c.WaitFor(ctx, "READY")
	if err != nil || first != "boot\nTESTGUEST READY" {
		t.Fatalf("first WaitFor = %q, %v", first, err)
	}
	if _, err := c.WaitFor(ctx, "READY"); err != nil {
		t.Fatalf("second READY: %v", err)
	}
	_, err = c.WaitFor(ctx, "READY")
	if err == nil || !strings.Contains(err.Error(), "console ended") {
		t.Errorf("third READY after the console closed = %v, want an end-of-console error", err)
	}
	if got := c.Transcript(); strings.Contains(got, "\r") || strings.Count(got, "READY") != 2 {
		t.Errorf("transcript %q", got)
	}
}

func TestConsoleWaitForHonoursContext(t *testing.T) {
	host, vm := net.Pipe()
	defer host.Close()
	defer vm.Close()
	c := guest.NewConsole(host)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := c.WaitFor(ctx, "never"); !errors.Is(err, context.Canceled) {
		t.Errorf("WaitFor with a cancelled context = %v", err)
	}
}

func TestOptionsCmdline(t *testing.T) {
	o := guest.Options{IP: "10.0.0.2/24", Gateway: "10.0.0.1", Host: "vm1", Listen: []int{22, 80}, PoweroffAfter: 1500 * time.Millisecond}
	want := "console=ttyS0 panic=-1 quiet tg.ip=10.0.0.2/24 tg.gw=10.0.0.1 tg.host=vm1 tg.listen=22,80 tg.poweroff_after=2"
	if got := o.Cmdline(); got != want {
		t.Errorf("Cmdline = %q\nwant     %q", got, want)
	}
	if got := (guest.Options{Verbose: true}).Cmdline(); got != "console=ttyS0 panic=-1" {
		t.Errorf("verbose empty Cmdline = %q", got)
	}
	if got := (guest.Options{}).ReadyLine(); got != "TESTGUEST READY host=testguest ip=none" {
		t.Errorf("default ReadyLine = %q", got)
	}
}
