package qemu_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/infinibay/infinivirt/pkg/qemu"
	"github.com/infinibay/infinivirt/pkg/qemuimg"
	"github.com/infinibay/infinivirt/pkg/testbed/guest"
)

// startDeadline bounds one QEMU start up to QMP; it only sets up the
// machine (-S), but the machine is shared.
const startDeadline = time.Minute

// TestQEMUAcceptsGoldenConfigs starts the real QEMU with the argv of every
// golden configuration that can run here, with real files and fds, and
// proves over QMP that it came up stopped and waiting (-S).
func TestQEMUAcceptsGoldenConfigs(t *testing.T) {
	if _, err := exec.LookPath(qemu.DefaultBinary); err != nil {
		t.Skip("qemu-system-x86_64 is not installed (Debian package qemu-system-x86)")
	}
	if os.Geteuid() != 0 {
		t.Skip("each QEMU runs in its own network namespace, which needs root")
	}
	files := realFiles(t)
	for _, gc := range goldenCases() {
		t.Run(gc.name, func(t *testing.T) {
			if gc.noRun != "" {
				t.Skip(gc.noRun)
			}
			ctx, cancel := context.WithTimeout(t.Context(), startDeadline)
			defer cancel()
			cfg := gc.cfg(files)
			if cfg.Firmware != nil {
				needFiles(t, cfg.Firmware.Code, files.UEFIVars)
			}
			// A private namespace: TAP queues for the NIC cases, and a
			// loopback where display ports clash with nobody. The TAP gets
			// an address because SPICE resolves 0.0.0.0 with
			// AI_ADDRCONFIG, which wants a non-loopback IPv4 address.
			network := guest.NewNetwork(t, "qtap0", gc.queues, "10.99.0.1/24")
			// A display must ask for a password it does not have yet, so
			// every login fails until the shim's set_password.
			var displayQuery string
			switch cfg.Display.Protocol {
			case qemu.DisplayVNC:
				displayQuery = "query-vnc"
			case qemu.DisplaySPICE:
				displayQuery = "query-spice"
			}
			query := displayQuery
			if gc.query != "" {
				query = gc.query
			}
			replies := startAndQuery(t, ctx, &cfg, network, query)
			if gc.check != nil {
				gc.check(t, replies[gc.query])
			}
			var st struct{ Status string }
			if err := json.Unmarshal(replies["query-status"], &st); err != nil || st.Status != "prelaunch" {
				t.Errorf("query-status = %s, want prelaunch (stopped by -S before the guest ran)", replies["query-status"])
			}
			if displayQuery != "" {
				var d struct {
					Enabled bool
					Auth    string
				}
				err := json.Unmarshal(replies[displayQuery], &d)
				if want := string(cfg.Display.Protocol); err != nil || !d.Enabled || d.Auth != want {
					t.Errorf("%s = %s, want enabled with %q password authentication", displayQuery, replies[displayQuery], want)
				}
			}
		})
	}
}

// realFiles creates the files the golden configurations name.
func realFiles(t *testing.T) files {
	ctx, cancel := context.WithTimeout(t.Context(), guest.BuildTimeout)
	defer cancel()
	dir := t.TempDir()
	f := files{
		QCOW2:     filepath.Join(dir, "disk0.qcow2"),
		Raw:       filepath.Join(dir, "data,1.raw"),
		ISO:       filepath.Join(dir, "install.iso"),
		AnswerISO: filepath.Join(dir, "answers.iso"),
	}
	var tool qemuimg.Tool
	if err := tool.Create(ctx, f.QCOW2, qemuimg.FormatQCOW2, 64<<20); err != nil {
		t.Fatal(err)
	}
	for i := range f.Data {
		f.Data[i] = filepath.Join(dir, fmt.Sprintf("disk%d.qcow2", i+2))
		if err := tool.Create(ctx, f.Data[i], qemuimg.FormatQCOW2, 64<<20); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range []string{f.Raw, f.ISO, f.AnswerISO} {
		if err := tool.Create(ctx, p, qemuimg.FormatRaw, 1<<20); err != nil {
			t.Fatal(err)
		}
	}
	addFirmwareFiles(t, &f, dir)
	img, err := guest.Ensure(ctx, "")
	if err != nil {
		t.Fatalf("building the test guest for direct boot: %v", err)
	}
	f.Kernel, f.Initrd = img.Kernel, img.Initrd
	return f
}

// startAndQuery runs QEMU for cfg inside network, speaks the QMP greeting,
// qmp_capabilities, query-status and the extra query by hand, and kills
// QEMU by PID. It returns the replies by command.
func startAndQuery(t *testing.T, ctx context.Context, cfg *qemu.Config, network *guest.Network, extraQuery string) map[string]json.RawMessage {
	t.Helper()
	qmpHost, qmpChild, err := guest.Socketpair("qmp")
	if err != nil {
		t.Fatal(err)
	}
	defer qmpHost.Close()
	// ExtraFiles[i] is fd 3+i; a nil entry keeps fd 4 closed when there is
	// no serial, so TAP queues stay at the fds the configuration names.
	extra := []*os.File{qmpChild, nil}
	if cfg.SerialFD != 0 {
		serialHost, serialChild, err := guest.Socketpair("serial")
		if err != nil {
			t.Fatal(err)
		}
		defer serialHost.Close()
		extra[1] = serialChild
	}
	cmd, err := qemu.Command(ctx, "", cfg)
	if err != nil {
		t.Fatal(err)
	}
	var stderr lockedBuffer
	cmd.ExtraFiles = append(extra, network.Files...)
	cmd.Stderr = &stderr
	if err := network.Do(cmd.Start); err != nil {
		t.Fatal(err)
	}
	for _, f := range extra {
		if f != nil {
			f.Close()
		}
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		cmd.Process.Kill()
		if err := <-exited; err != nil {
			t.Logf("QEMU ended: %v", err) // killed, as it should
		}
	}()

	commands := []string{"qmp_capabilities", "query-status"}
	if extraQuery != "" {
		commands = append(commands, extraQuery)
	}
	replies, err := qmpSession(ctx, qmpHost, commands...)
	if err != nil {
		select {
		case werr := <-exited:
			exited <- werr
			t.Fatalf("QEMU refused the argv (%v): %s", werr, stderr.String())
		default:
			t.Fatalf("QMP: %v; QEMU stderr: %s", err, stderr.String())
		}
	}
	// -sandbox took effect: the process runs under a seccomp filter.
	if status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", cmd.Process.Pid)); err != nil {
		t.Errorf("reading QEMU's status: %v", err)
	} else if !bytes.Contains(status, []byte("\nSeccomp:\t2\n")) {
		t.Errorf("QEMU runs without a seccomp filter despite -sandbox")
	}
	return replies
}

// qmpSession reads the greeting and runs commands (without arguments) in
// order, returning each one's "return".
func qmpSession(ctx context.Context, conn net.Conn, commands ...string) (map[string]json.RawMessage, error) {
	if dl, ok := ctx.Deadline(); ok {
		if err := conn.SetDeadline(dl); err != nil {
			return nil, err
		}
	}
	dec := json.NewDecoder(bufio.NewReader(conn))
	var greeting struct{ QMP json.RawMessage }
	if err := dec.Decode(&greeting); err != nil || greeting.QMP == nil {
		return nil, fmt.Errorf("no QMP greeting: %v", err)
	}
	type reply struct {
		Return json.RawMessage
		Error  json.RawMessage
		Event  string
	}
	call := func(command string) (json.RawMessage, error) {
		if _, err := fmt.Fprintf(conn, `{"execute":%q}`+"\n", command); err != nil {
			return nil, err
		}
		for {
			var r reply
			if err := dec.Decode(&r); err != nil {
				return nil, fmt.Errorf("%s: %w", command, err)
			}
			switch {
			case r.Error != nil:
				return nil, fmt.Errorf("%s: %s", command, r.Error)
			case r.Return != nil:
				return r.Return, nil
			}
		}
	}
	replies := map[string]json.RawMessage{}
	for _, c := range commands {
		ret, err := call(c)
		if err != nil {
			return nil, err
		}
		replies[c] = ret
	}
	return replies, nil
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
