package e2e

import (
	"context"
	"crypto/des"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netns"

	"github.com/infinibay/infinivirt/pkg/vmspec"
)

func TestDisplayPasswordStaysSecret(t *testing.T) {
	b := setup(t)
	vm := b.createVM(t, "secret")
	pid := b.waitStatus(t, vm.ID, "running", "").QEMUPID

	cmdline := b.run(t, "cat", "/proc/"+strconv.Itoa(pid)+"/cmdline")
	if !strings.Contains(cmdline, "-vnc") {
		t.Fatalf("read the wrong cmdline: %q", cmdline)
	}
	if strings.Contains(cmdline, vncPassword) {
		t.Fatal("the display password is in QEMU's command line")
	}
	spec := b.run(t, "cat", vmspec.DefaultLayout.SpecFile(vm.ID))
	if !strings.Contains(spec, vm.ID) || strings.Contains(spec, vncPassword) {
		t.Fatalf("spec.json holds the display password, or is not the VM's:\n%s", spec)
	}
	if mode := b.run(t, "stat", "-c", "%a %U", vmspec.SecretsFile(vmspec.DefaultLayout.SpecFile(vm.ID))); mode != "600 root" {
		t.Fatalf("secrets.json is %q, want 600 root", mode)
	}
	journal := b.run(t, "journalctl", "--no-pager", "-o", "verbose")
	if !strings.Contains(journal, vm.ID) {
		t.Fatal("the journal does not mention the VM: the check would prove nothing")
	}
	if strings.Contains(journal, vncPassword) {
		t.Fatal("the display password is in the journal (agent or shim logs)")
	}

	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(vm.GraphicPort))
	if err := b.vncLogin(addr, "wrong"); err == nil {
		t.Fatal("VNC accepted a wrong password")
	}
	if err := b.vncLogin(addr, vncPassword); err != nil {
		t.Fatalf("VNC refused the right password: %v", err)
	}
}

// vncLogin runs an RFB 3.8 handshake with VNC authentication from inside the
// host's network namespace, and returns nil once the server accepts.
func (b *bed) vncLogin(addr, password string) error {
	conn, err := b.dialInHost(addr)
	if err != nil {
		return err
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(20 * time.Second)); err != nil {
		return err
	}
	version := make([]byte, 12)
	if _, err := io.ReadFull(conn, version); err != nil {
		return fmt.Errorf("server version: %w", err)
	}
	if !strings.HasPrefix(string(version), "RFB 003.") {
		return fmt.Errorf("not RFB: %q", version)
	}
	if _, err := conn.Write([]byte("RFB 003.008\n")); err != nil {
		return err
	}
	var n [1]byte
	if _, err := io.ReadFull(conn, n[:]); err != nil || n[0] == 0 {
		return fmt.Errorf("no security types (%v)", err)
	}
	types := make([]byte, n[0])
	if _, err := io.ReadFull(conn, types); err != nil {
		return fmt.Errorf("security types: %w", err)
	}
	if !strings.ContainsRune(string(types), 2) {
		return fmt.Errorf("server does not offer VNC authentication: %v", types)
	}
	if _, err := conn.Write([]byte{2}); err != nil {
		return err
	}
	challenge := make([]byte, 16)
	if _, err := io.ReadFull(conn, challenge); err != nil {
		return err
	}
	if _, err := conn.Write(vncResponse(password, challenge)); err != nil {
		return err
	}
	var result uint32
	if err := binary.Read(conn, binary.BigEndian, &result); err != nil {
		return err
	}
	if result != 0 {
		return fmt.Errorf("authentication failed (%d)", result)
	}
	// ClientInit, then the server's framebuffer size proves the session is up.
	if _, err := conn.Write([]byte{1}); err != nil {
		return err
	}
	var w, h uint16
	if err := binary.Read(conn, binary.BigEndian, &w); err != nil {
		return fmt.Errorf("no ServerInit after login: %w", err)
	}
	if err := binary.Read(conn, binary.BigEndian, &h); err != nil {
		return fmt.Errorf("no ServerInit after login: %w", err)
	}
	if w == 0 || h == 0 {
		return fmt.Errorf("no ServerInit after login")
	}
	return nil
}

// vncResponse is DES-ECB of the challenge, keyed by the password padded to 8
// bytes with each key byte's bits reversed (the RFB quirk).
func vncResponse(password string, challenge []byte) []byte {
	key := make([]byte, 8)
	copy(key, password)
	for i, k := range key {
		var r byte
		for bit := 0; bit < 8; bit++ {
			if k&(1<<bit) != 0 {
				r |= 0x80 >> bit
			}
		}
		key[i] = r
	}
	c, _ := des.NewCipher(key)
	out := make([]byte, 16)
	c.Encrypt(out[:8], challenge[:8])
	c.Encrypt(out[8:], challenge[8:])
	return out
}

// dialInHost opens a TCP connection from inside the host's network
// namespace: a socket belongs to the namespace it was created in.
func (b *bed) dialInHost(addr string) (net.Conn, error) {
	runtime.LockOSThread()
	back := true
	defer func() {
		// A thread that cannot go back stays locked: Go then retires it
		// with this goroutine instead of reusing it in the wrong namespace.
		if back {
			runtime.UnlockOSThread()
		}
	}()
	orig, err := netns.Get()
	if err != nil {
		return nil, err
	}
	defer orig.Close()
	target, err := netns.GetFromPid(b.host.PID())
	if err != nil {
		return nil, err
	}
	defer target.Close()
	if err := netns.Set(target); err != nil {
		return nil, err
	}
	back = false
	defer func() { back = netns.Set(orig) == nil }()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var d net.Dialer
	return d.DialContext(ctx, "tcp", addr)
}
