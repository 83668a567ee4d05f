package guest_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/infinibay/infinivirt/pkg/qemu"
	"github.com/infinibay/infinivirt/pkg/qemuimg"
	"github.com/infinibay/infinivirt/pkg/testbed/guest"
)

// bootDeadline is generous: a TCG boot takes 6-10 s alone, and much more
// when other guests share the machine's two cores.
const bootDeadline = 3 * time.Minute

const testUUID = "3b241101-e2bb-4255-8caf-4136c566a962"

func needQEMU(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath(qemu.DefaultBinary); err != nil {
		t.Skip("qemu-system-x86_64 is not installed (Debian package qemu-system-x86)")
	}
	if _, err := exec.LookPath("apt-get"); err != nil {
		t.Skip("building the test guest needs apt-get (Debian)")
	}
}

func image(t *testing.T) *guest.Image {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), guest.BuildTimeout)
	defer cancel()
	img, err := guest.Ensure(ctx, "")
	if err != nil {
		t.Fatalf("building the test guest: %v", err)
	}
	return img
}

// machine is a running QEMU with its QMP and serial sockets.
type machine struct {
	cmd     *exec.Cmd
	qmp     *qmpConn
	console *guest.Console
	stderr  *lockedBuffer
	exited  chan struct{}
	waitErr error
}

// start runs QEMU for cfg with QMP on fd 3, serial on fd 4 and extra
// (TAP queues) from fd 5, and does the QMP handshake. QEMU is killed by
// PID when the test ends.
func start(t testing.TB, ctx context.Context, cfg qemu.Config, extra []*os.File) *machine {
	t.Helper()
	qmpHost, qmpChild, err := guest.Socketpair("qmp")
	if err != nil {
		t.Fatal(err)
	}
	serialHost, serialChild, err := guest.Socketpair("serial")
	if err != nil {
		t.Fatal(err)
	}
	cfg.QMPFD, cfg.SerialFD = 3, 4
	cmd, err := qemu.Command(ctx, "", &cfg)
	if err != nil {
		t.Fatal(err)
	}
	m := &machine{cmd: cmd, stderr: &lockedBuffer{}, exited: make(chan struct{})}
	cmd.ExtraFiles = append([]*os.File{qmpChild, serialChild}, extra...)
	cmd.Stderr = m.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	qmpChild.Close()
	serialChild.Close()
	go func() { m.waitErr = cmd.Wait(); close(m.exited) }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-m.exited
		qmpHost.Close()
		serialHost.Close()
		if t.Failed() {
			t.Logf("QEMU stderr:\n%s\nserial console:\n%s", m.stderr, m.console.Transcript())
		}
	})
	m.console = guest.NewConsole(serialHost)
	if m.qmp, err = qmpHandshake(ctx, qmpHost); err != nil {
		t.Fatalf("QMP handshake: %v", err)
	}
	return m
}

func (m *machine) exitCode(t testing.TB, ctx context.Context) int {
	t.Helper()
	select {
	case <-m.exited:
	case <-ctx.Done():
		t.Fatalf("QEMU did not exit: %v", ctx.Err())
	}
	var xe *exec.ExitError
	if errors.As(m.waitErr, &xe) {
		return xe.ExitCode()
	}
	if m.waitErr != nil {
		t.Fatalf("waiting for QEMU: %v", m.waitErr)
	}
	return 0
}

func testConfig(opts guest.Options, img *guest.Image) qemu.Config {
	return qemu.Config{
		UUID: testUUID, Accel: qemu.AccelTCG, CPUs: 1, MemoryMiB: 128,
		Boot: &qemu.DirectBoot{Kernel: img.Kernel, Initrd: img.Initrd, Cmdline: opts.Cmdline()},
	}
}

// TestBootAndPowerButton boots the guest with a disk and a NIC, checks it
// from the host over TCP and over the serial shell, then presses the power
// button and sees the guest and QEMU go.
func TestBootAndPowerButton(t *testing.T) {
	needQEMU(t)
	img := image(t)
	ctx, cancel := context.WithTimeout(t.Context(), bootDeadline)
	defer cancel()

	disk := filepath.Join(t.TempDir(), "disk0.qcow2")
	if err := (&qemuimg.Tool{}).Create(ctx, disk, qemuimg.FormatQCOW2, 64<<20); err != nil {
		t.Fatal(err)
	}
	network := guest.NewNetwork(t, "tgtap0", 1, "10.77.0.1/24")
	opts := guest.Options{IP: "10.77.0.2/24", Gateway: "10.77.0.1", Host: "tg-power", Listen: []int{22, 80}}
	cfg := testConfig(opts, img)
	cfg.Disks = []qemu.Disk{{ID: "disk0", Path: disk, Format: qemu.FormatQCOW2}}
	cfg.NICs = []qemu.NIC{{ID: "net0", MAC: "52:54:00:77:00:02", FDs: []int{5}}}
	m := start(t, ctx, cfg, network.Files)

	if _, err := m.qmp.execute(ctx, "cont"); err != nil {
		t.Fatal(err)
	}
	if _, err := m.console.WaitFor(ctx, opts.ReadyLine()); err != nil {
		t.Fatal(err)
	}

	out, rc, err := m.console.Run(ctx, "cat /sys/block/vda/size; cat /sys/class/net/eth0/address; ip route")
	if err != nil || rc != 0 {
		t.Fatalf("serial shell: rc %d, %v", rc, err)
	}
	// No echo, no prompt: the output is exactly what the commands printed.
	if want := "131072\n52:54:00:77:00:02\ndefault via 10.77.0.1 dev eth0"; !strings.HasPrefix(out, want) {
		t.Errorf("guest said %q, want it to start with %q", out, want)
	}
	if _, rc, err := m.console.Run(ctx, "false"); err != nil || rc != 1 {
		t.Errorf("rc of false = %d, %v; want 1", rc, err)
	}

	for _, port := range opts.Listen {
		if got := dialUntilAnswered(t, ctx, network, fmt.Sprintf("10.77.0.2:%d", port)); got != fmt.Sprintf("OK %d", port) {
			t.Errorf("port %d answered %q", port, got)
		}
	}

	if _, err := m.qmp.execute(ctx, "system_powerdown"); err != nil {
		t.Fatal(err)
	}
	if _, err := m.console.WaitFor(ctx, guest.PowerButtonLine); err != nil {
		t.Fatal(err)
	}
	ev, err := m.qmp.waitEvent(ctx, "SHUTDOWN")
	if err != nil {
		t.Fatal(err)
	}
	if ev["guest"] != true || ev["reason"] != "guest-shutdown" {
		t.Errorf("SHUTDOWN data = %v, want a guest-initiated shutdown", ev)
	}
	if code := m.exitCode(t, ctx); code != 0 {
		t.Errorf("QEMU exit code %d after the guest powered off", code)
	}
}

// TestGuestSeesEveryDiskBus boots the guest with a disk on each bus, each
// of its own size and cache mode, and reads them back in the guest: the
// virtio-blk one as vda, the virtio-scsi and sata ones as sd disks under
// their controllers, and each one's write cache as the cache mode says.
func TestGuestSeesEveryDiskBus(t *testing.T) {
	needQEMU(t)
	img := image(t)
	ctx, cancel := context.WithTimeout(t.Context(), bootDeadline)
	defer cancel()
	disks := []qemu.Disk{
		{ID: "disk0", Bus: qemu.BusVirtioBlk, Cache: qemu.CacheWritethrough},
		{ID: "disk1", Bus: qemu.BusVirtioSCSI, Cache: qemu.CacheNone},
		{ID: "disk2", Bus: qemu.BusSATA, Cache: qemu.CacheDirectSync},
	}
	for i := range disks {
		d := &disks[i]
		d.Path, d.Format = filepath.Join(t.TempDir(), d.ID+".qcow2"), qemu.FormatQCOW2
		if err := (&qemuimg.Tool{}).Create(ctx, d.Path, qemuimg.FormatQCOW2, int64(i+1)<<24); err != nil {
			t.Fatal(err)
		}
	}
	opts := guest.Options{Host: "tg-buses"}
	cfg := testConfig(opts, img)
	cfg.Disks = disks
	m := start(t, ctx, cfg, nil)
	if _, err := m.qmp.execute(ctx, "cont"); err != nil {
		t.Fatal(err)
	}
	if _, err := m.console.WaitFor(ctx, opts.ReadyLine()); err != nil {
		t.Fatal(err)
	}
	// The sd names follow the probe order: each disk is found by its size.
	out, rc, err := m.console.Run(ctx, `for d in /sys/block/vd* /sys/block/sd*; do echo "$(cat $d/size) $(readlink -f $d) $(cat $d/queue/write_cache)"; done`)
	if err != nil || rc != 0 {
		t.Fatalf("guest: rc %d, %v: %s", rc, err, out)
	}
	got := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		size, rest, _ := strings.Cut(line, " ")
		got[size] = rest
	}
	for i, want := range []struct{ path, cache string }{
		{"/block/vda", "write through"},
		{"/host", "write back"}, // a SCSI host under the virtio device
		{"/ata", "write through"},
	} {
		sectors := fmt.Sprint((i + 1) << 24 / 512)
		if g := got[sectors]; !strings.Contains(g, want.path) || !strings.HasSuffix(g, want.cache) {
			t.Errorf("%s (%s sectors): guest shows %q, want a path with %q and %q", disks[i].ID, sectors, g, want.path, want.cache)
		}
	}
	if !strings.Contains(got[fmt.Sprint(2<<24/512)], "virtio") {
		t.Errorf("the scsi disk is not under a virtio device: %v", got)
	}
}

// TestResetBootsAgain presses reset and sees the guest come up again.
func TestResetBootsAgain(t *testing.T) {
	needQEMU(t)
	img := image(t)
	ctx, cancel := context.WithTimeout(t.Context(), 2*bootDeadline)
	defer cancel()
	opts := guest.Options{Host: "tg-reset"}
	m := start(t, ctx, testConfig(opts, img), nil)
	if _, err := m.qmp.execute(ctx, "cont"); err != nil {
		t.Fatal(err)
	}
	if _, err := m.console.WaitFor(ctx, opts.ReadyLine()); err != nil {
		t.Fatal(err)
	}
	if _, _, err := m.console.Run(ctx, "touch /tmp/before-reset"); err != nil {
		t.Fatal(err)
	}
	if _, err := m.qmp.execute(ctx, "system_reset"); err != nil {
		t.Fatal(err)
	}
	if _, err := m.qmp.waitEvent(ctx, "RESET"); err != nil {
		t.Fatal(err)
	}
	if _, err := m.console.WaitFor(ctx, opts.ReadyLine()); err != nil {
		t.Fatalf("after system_reset: %v", err)
	}
	// A fresh boot starts from the initramfs again: the file is gone.
	out, _, err := m.console.Run(ctx, "ls /tmp")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(out, "before-reset") {
		t.Errorf("/tmp still holds %q: the guest did not boot again", out)
	}
}

// TestPoweroffAfterWithNoShutdown lets the guest power itself off, as an
// installer would, under -no-shutdown: QEMU stays up in state "shutdown"
// so its owner decides what happens next.
func TestPoweroffAfterWithNoShutdown(t *testing.T) {
	needQEMU(t)
	img := image(t)
	ctx, cancel := context.WithTimeout(t.Context(), bootDeadline)
	defer cancel()
	opts := guest.Options{Host: "tg-installer", PoweroffAfter: 2 * time.Second}
	cfg := testConfig(opts, img)
	cfg.NoShutdown = true
	m := start(t, ctx, cfg, nil)
	if _, err := m.qmp.execute(ctx, "cont"); err != nil {
		t.Fatal(err)
	}
	if _, err := m.console.WaitFor(ctx, opts.ReadyLine()); err != nil {
		t.Fatal(err)
	}
	if _, err := m.console.WaitFor(ctx, guest.PoweroffAfter); err != nil {
		t.Fatal(err)
	}
	ev, err := m.qmp.waitEvent(ctx, "SHUTDOWN")
	if err != nil {
		t.Fatal(err)
	}
	if ev["guest"] != true {
		t.Errorf("SHUTDOWN data = %v, want guest=true", ev)
	}
	ret, err := m.qmp.execute(ctx, "query-status")
	if err != nil {
		t.Fatalf("QEMU gone after a guest power-off under -no-shutdown: %v", err)
	}
	var st struct{ Status string }
	if err := json.Unmarshal(ret, &st); err != nil || st.Status != "shutdown" {
		t.Errorf("query-status = %s, want status shutdown", ret)
	}
}

func dialUntilAnswered(t *testing.T, ctx context.Context, n *guest.Network, addr string) string {
	t.Helper()
	for {
		conn, err := n.Dial(ctx, "tcp", addr)
		if err == nil {
			err := conn.SetDeadline(time.Now().Add(10 * time.Second))
			var b []byte
			if err == nil {
				b, err = io.ReadAll(conn)
			}
			conn.Close()
			if err == nil && len(b) > 0 {
				return strings.TrimSpace(string(b))
			}
		}
		select {
		case <-ctx.Done(): // the listener starts in the background of the guest's init
			t.Fatalf("%s never answered: last error %v", addr, err)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// qmpConn speaks just enough QMP, by hand, for these tests.
type qmpConn struct {
	conn   net.Conn
	dec    *json.Decoder
	events []map[string]json.RawMessage
}

func qmpHandshake(ctx context.Context, conn net.Conn) (*qmpConn, error) {
	q := &qmpConn{conn: conn, dec: json.NewDecoder(bufio.NewReader(conn))}
	var greeting map[string]json.RawMessage
	if err := q.read(ctx, &greeting); err != nil {
		return nil, err
	}
	if _, ok := greeting["QMP"]; !ok {
		return nil, fmt.Errorf("no QMP greeting: %v", greeting)
	}
	_, err := q.execute(ctx, "qmp_capabilities")
	return q, err
}

func (q *qmpConn) read(ctx context.Context, v any) error {
	if dl, ok := ctx.Deadline(); ok {
		if err := q.conn.SetReadDeadline(dl); err != nil {
			return err
		}
	}
	return q.dec.Decode(v)
}

// execute sends a command without arguments and returns its "return",
// keeping events that arrive meanwhile for waitEvent.
func (q *qmpConn) execute(ctx context.Context, command string) (json.RawMessage, error) {
	if _, err := fmt.Fprintf(q.conn, `{"execute":%q}`+"\n", command); err != nil {
		return nil, err
	}
	for {
		var msg map[string]json.RawMessage
		if err := q.read(ctx, &msg); err != nil {
			return nil, fmt.Errorf("%s: %w", command, err)
		}
		switch {
		case msg["return"] != nil:
			return msg["return"], nil
		case msg["error"] != nil:
			return nil, fmt.Errorf("%s: %s", command, msg["error"])
		case msg["event"] != nil:
			q.events = append(q.events, msg)
		}
	}
}

// waitEvent returns the data of the first event called name, kept or new.
func (q *qmpConn) waitEvent(ctx context.Context, name string) (map[string]any, error) {
	for {
		for i, ev := range q.events {
			var got string
			if err := json.Unmarshal(ev["event"], &got); err != nil {
				return nil, fmt.Errorf("event name: %w", err)
			}
			if got == name {
				q.events = append(q.events[:i], q.events[i+1:]...)
				var data map[string]any
				if err := json.Unmarshal(ev["data"], &data); err != nil && ev["data"] != nil {
					return nil, fmt.Errorf("%s data: %w", name, err)
				}
				return data, nil
			}
		}
		var msg map[string]json.RawMessage
		if err := q.read(ctx, &msg); err != nil {
			return nil, fmt.Errorf("waiting for event %s: %w", name, err)
		}
		if msg["event"] != nil {
			q.events = append(q.events, msg)
		}
	}
}

// lockedBuffer collects QEMU's stderr, written by exec's copier goroutine.
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

// BenchmarkBootToReady measures QEMU start → READY on the serial console
// and power button → QEMU exit, under TCG with 1 vCPU. Run it with
// -benchtime=3x: each iteration is a whole boot.
func BenchmarkBootToReady(b *testing.B) {
	if _, err := exec.LookPath(qemu.DefaultBinary); err != nil {
		b.Skip("qemu-system-x86_64 is not installed")
	}
	ctx, cancel := context.WithTimeout(b.Context(), guest.BuildTimeout)
	defer cancel()
	img, err := guest.Ensure(ctx, "")
	if err != nil {
		b.Fatal(err)
	}
	var ready, off time.Duration
	for b.Loop() {
		r, o := bootOnce(b, img)
		ready += r
		off += o
	}
	b.ReportMetric(ready.Seconds()/float64(b.N), "s/ready")
	b.ReportMetric(float64(off.Milliseconds())/float64(b.N), "ms/powerdown")
}

func bootOnce(b *testing.B, img *guest.Image) (ready, powerdown time.Duration) {
	ctx, cancel := context.WithTimeout(b.Context(), bootDeadline)
	defer cancel()
	opts := guest.Options{Host: "tg-bench"}
	begin := time.Now()
	m := start(b, ctx, testConfig(opts, img), nil)
	if _, err := m.qmp.execute(ctx, "cont"); err != nil {
		b.Fatal(err)
	}
	if _, err := m.console.WaitFor(ctx, opts.ReadyLine()); err != nil {
		b.Fatal(err)
	}
	ready = time.Since(begin)
	begin = time.Now()
	if _, err := m.qmp.execute(ctx, "system_powerdown"); err != nil {
		b.Fatal(err)
	}
	if code := m.exitCode(b, ctx); code != 0 {
		b.Fatalf("QEMU exit code %d", code)
	}
	return ready, time.Since(begin)
}
