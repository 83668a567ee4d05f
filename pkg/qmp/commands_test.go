package qmp_test

import (
	"crypto/des"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/bits"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/infinibay/infinivirt/pkg/errdefs"
	"github.com/infinibay/infinivirt/pkg/qmp"
)

func TestGetFDAndCloseFD(t *testing.T) {
	vm := startQEMU(t, qemuSetup{args: machineNone})
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	fi, err := r.Stat()
	if err != nil {
		t.Fatal(err)
	}
	pipeLink := fmt.Sprintf("pipe:[%d]", fi.Sys().(*syscall.Stat_t).Ino)

	if err := vm.GetFD(testCtx(t), "pipe0", r); err != nil {
		t.Fatal(err)
	}
	if !holdsFile(t, vm.cmd.Process.Pid, pipeLink) {
		t.Fatalf("QEMU does not hold %s after getfd", pipeLink)
	}
	if err := vm.CloseFD(testCtx(t), "pipe0"); err != nil {
		t.Fatal(err)
	}
	if holdsFile(t, vm.cmd.Process.Pid, pipeLink) {
		t.Errorf("QEMU still holds %s after closefd", pipeLink)
	}
	var qe *qmp.Error
	if err := vm.CloseFD(testCtx(t), "pipe0"); !errors.As(err, &qe) {
		t.Errorf("closing an unknown fd name: err = %v, want *qmp.Error", err)
	}
	if err := vm.ExecuteWithFile(testCtx(t), "getfd", map[string]string{"fdname": "x"}, nil, nil); err == nil {
		t.Error("ExecuteWithFile without a file must fail")
	}
}

// holdsFile reports whether process pid has a descriptor whose /proc link is target.
func holdsFile(t *testing.T, pid int, target string) bool {
	t.Helper()
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if link, err := os.Readlink(filepath.Join(dir, e.Name())); err == nil && link == target {
			return true
		}
	}
	return false
}

func TestDisplayPasswords(t *testing.T) {
	dir := t.TempDir()
	vncSock := filepath.Join(dir, "vnc.sock")
	vm := startQEMU(t, qemuSetup{args: append(slices.Clone(machineNone),
		"-vnc", "unix:"+vncSock+",password=on",
		"-spice", "unix=on,addr="+filepath.Join(dir, "spice.sock"))})
	ctx := testCtx(t)

	var servers []struct {
		ID     string `json:"id"`
		Auth   string `json:"auth"`
		Server []struct {
			Family string `json:"family"`
		} `json:"server"`
	}
	if err := vm.Execute(ctx, "query-vnc-servers", nil, &servers); err != nil {
		t.Fatal(err)
	}
	if len(servers) != 1 || servers[0].ID != "default" || servers[0].Auth != "vnc" ||
		len(servers[0].Server) != 1 || servers[0].Server[0].Family != "unix" {
		t.Fatalf("query-vnc-servers = %+v, want one unix server \"default\" with vnc auth", servers)
	}

	if err := vm.SetPassword(ctx, qmp.ProtocolVNC, "s3cret", ""); err != nil {
		t.Fatal(err)
	}
	if !vncLogin(t, vncSock, "s3cret") || vncLogin(t, vncSock, "wrong") {
		t.Fatal("after set_password the VNC server must accept exactly the new password")
	}
	if err := vm.SetPassword(ctx, qmp.ProtocolVNC, "other1", "default"); err != nil {
		t.Fatal(err)
	}
	if !vncLogin(t, vncSock, "other1") {
		t.Fatal("set_password with display \"default\" did not take effect")
	}
	var qe *qmp.Error
	if err := vm.SetPassword(ctx, qmp.ProtocolVNC, "s3cret", "no-such-display"); !errors.As(err, &qe) {
		t.Errorf("unknown VNC display: err = %v, want *qmp.Error", err)
	} else if strings.Contains(err.Error(), "s3cret") {
		t.Errorf("error message leaks the password: %v", err)
	}

	var spice struct {
		Enabled         bool   `json:"enabled"`
		Auth            string `json:"auth"`
		CompiledVersion string `json:"compiled-version"`
	}
	if err := vm.Execute(ctx, "query-spice", nil, &spice); err != nil {
		t.Fatal(err)
	}
	if !spice.Enabled || spice.CompiledVersion == "" {
		t.Errorf("query-spice = %+v, want an enabled server with a version", spice)
	}
	if err := vm.SetPassword(ctx, qmp.ProtocolSpice, "n3wpass", ""); err != nil {
		t.Fatal(err)
	}
	if err := vm.Execute(ctx, "query-spice", nil, &spice); err != nil || spice.Auth != "spice" {
		t.Errorf("after set_password query-spice auth = %q (err %v), want spice", spice.Auth, err)
	}

	// Arguments QEMU would reject are caught before sending, naming the field.
	if err := vm.SetPassword(ctx, "rdp", "x", ""); !errors.Is(err, &errdefs.Error{Code: errdefs.CodeInvalidArgument, Field: "protocol"}) {
		t.Errorf("unknown protocol: err = %v, want InvalidArgument on protocol", err)
	}
	if err := vm.SetPassword(ctx, qmp.ProtocolSpice, "x", "default"); !errors.Is(err, &errdefs.Error{Code: errdefs.CodeInvalidArgument, Field: "display"}) {
		t.Errorf("spice with a display: err = %v, want InvalidArgument on display", err)
	}
}

// vncLogin runs the RFB 3.8 handshake with VNC authentication and reports
// whether the server accepted password.
func vncLogin(t *testing.T, path, password string) bool {
	t.Helper()
	conn, err := net.DialTimeout("unix", path, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	must := func(err error) {
		if err != nil {
			t.Helper()
			t.Fatalf("RFB handshake: %v", err)
		}
	}
	version := make([]byte, 12)
	_, err = io.ReadFull(conn, version)
	must(err)
	_, err = conn.Write([]byte("RFB 003.008\n"))
	must(err)
	count := make([]byte, 1)
	_, err = io.ReadFull(conn, count)
	must(err)
	types := make([]byte, count[0])
	_, err = io.ReadFull(conn, types)
	must(err)
	if !slices.Contains(types, 2) {
		t.Fatalf("VNC server offers security types %v, want VNC auth (2)", types)
	}
	_, err = conn.Write([]byte{2})
	must(err)
	challenge := make([]byte, 16)
	_, err = io.ReadFull(conn, challenge)
	must(err)
	// VNC auth: DES-ECB of the challenge, key = password padded to 8 bytes
	// with each byte's bits reversed.
	key := make([]byte, 8)
	copy(key, password)
	for i := range key {
		key[i] = bits.Reverse8(key[i])
	}
	block, err := des.NewCipher(key)
	must(err)
	response := make([]byte, 16)
	block.Encrypt(response[:8], challenge[:8])
	block.Encrypt(response[8:], challenge[8:])
	_, err = conn.Write(response)
	must(err)
	result := make([]byte, 4)
	_, err = io.ReadFull(conn, result)
	must(err)
	return binary.BigEndian.Uint32(result) == 0
}

func TestPowerButtonAndReset(t *testing.T) {
	vm := startQEMU(t, qemuSetup{args: machineQ35})
	events, unsubscribe := vm.Subscribe(8)
	defer unsubscribe()
	ctx := testCtx(t)

	if err := vm.SystemPowerdown(ctx); err != nil {
		t.Fatal(err)
	}
	if ev := nextEvent(t, events); ev.Name != qmp.EventPowerdown {
		t.Errorf("after system_powerdown: event %s, want POWERDOWN", ev.Name)
	}
	if err := vm.SystemReset(ctx); err != nil {
		t.Fatal(err)
	}
	ev := nextEvent(t, events)
	if ev.Name != qmp.EventReset {
		t.Fatalf("after system_reset: event %s, want RESET", ev.Name)
	}
	if d, err := ev.Shutdown(); err != nil || d.Guest || d.Reason != "host-qmp-system-reset" {
		t.Errorf("RESET data = %+v (err %v), want guest=false reason=host-qmp-system-reset", d, err)
	}
	if _, err := (qmp.Event{Name: qmp.EventStop}).Shutdown(); err == nil {
		t.Error("Shutdown() on a STOP event must fail")
	}

}

func nextEvent(t *testing.T, events <-chan qmp.Event) qmp.Event {
	t.Helper()
	select {
	case ev, ok := <-events:
		if !ok {
			t.Fatal("event channel closed")
		}
		return ev
	case <-time.After(20 * time.Second):
		t.Fatal("no event")
	}
	return qmp.Event{}
}

func TestTPM(t *testing.T) {
	swtpm, err := exec.LookPath("swtpm")
	if err != nil {
		t.Skip("swtpm is not installed (Debian package swtpm); it emulates the TPM that Windows 11 needs")
	}
	// swtpm's control channel is a socketpair too: one end to swtpm, the
	// other to QEMU as fd 4.
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	forQEMU := os.NewFile(uintptr(fds[0]), "tpm-qemu")
	forSwtpm := os.NewFile(uintptr(fds[1]), "tpm-swtpm")
	defer forQEMU.Close()
	sw := exec.Command(swtpm, "socket", "--tpm2", "--tpmstate", "dir="+t.TempDir(),
		"--ctrl", "type=unixio,clientfd=3", "--flags", "not-need-init", "--terminate")
	sw.ExtraFiles = []*os.File{forSwtpm}
	sw.Env = withoutNotifySocket(os.Environ())
	swStderr := &lockedBuffer{}
	sw.Stderr = swStderr
	if err := sw.Start(); err != nil {
		t.Fatal(err)
	}
	forSwtpm.Close()
	swDone := make(chan struct{})
	go func() { _ = sw.Wait(); close(swDone) }() // killed at cleanup
	t.Cleanup(func() {
		sw.Process.Kill()
		<-swDone
	})

	vm := startQEMU(t, qemuSetup{
		args: append(slices.Clone(machineQ35),
			"-chardev", "socket,id=chrtpm,fd=4",
			"-tpmdev", "emulator,id=tpm0,chardev=chrtpm",
			"-device", `{"driver":"tpm-crb","id":"tpmcrb0","tpmdev":"tpm0"}`),
		files: []*os.File{forQEMU},
	})
	ctx := testCtx(t)
	devs, err := vm.QueryTPM(ctx)
	if err != nil {
		t.Fatalf("%v; swtpm stderr: %s", err, swStderr)
	}
	if len(devs) != 1 || devs[0].ID != "tpm0" || devs[0].Model != "tpm-crb" || devs[0].Type != "emulator" {
		t.Errorf("query-tpm = %+v, want tpm0 tpm-crb emulator", devs)
	}
}

func TestNoTPM(t *testing.T) {
	vm := startQEMU(t, qemuSetup{args: machineNone})
	devs, err := vm.QueryTPM(testCtx(t))
	if err != nil || len(devs) != 0 {
		t.Errorf("query-tpm without a TPM = %+v (err %v), want an empty list", devs, err)
	}
}
