package e2e

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/infinibay/infinivirt/pkg/agentclient"
	"github.com/infinibay/infinivirt/pkg/api"
	"github.com/infinibay/infinivirt/pkg/errdefs"
	"github.com/infinibay/infinivirt/pkg/shimclient"
	"github.com/infinibay/infinivirt/pkg/store"
	"github.com/infinibay/infinivirt/pkg/testbed"
	"github.com/infinibay/infinivirt/pkg/testbed/guest"
	"github.com/infinibay/infinivirt/pkg/testbed/postgres"
	"github.com/infinibay/infinivirt/pkg/vmspec"
)

// Inside the test-bed host.
const (
	bridgeName   = "ivbr0"
	bridgeCIDR   = "10.99.0.1/24"
	imagesDir    = "/var/lib/infinivirt-images"
	vncPassword  = "s3cr3tPw"
	guestTimeout = 3 * time.Minute // TCG boots take 6-10 s alone, much more on a busy machine
)

// bed is one test-bed host running the agent, shared by the package's
// tests, plus the PostgreSQL cluster the agent writes to.
type bed struct {
	host   *testbed.Host
	pg     *postgres.Cluster
	db     *store.Store
	client *agentclient.Client
	binDir string
	nextIP atomic.Int32
}

var (
	sharedOnce sync.Once
	shared     *bed
	sharedSkip string
	sharedErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if shared != nil {
		shared.close()
	}
	os.Exit(code)
}

// setup returns the package's test bed, booting it on first use. When the
// test fails, the journal of the agent and the VM units goes to the log.
func setup(t testing.TB) *bed {
	t.Helper()
	sharedOnce.Do(func() { shared, sharedSkip, sharedErr = startBed() })
	if sharedSkip != "" {
		t.Skip(sharedSkip)
	}
	if sharedErr != nil {
		t.Fatalf("test bed: %v", sharedErr)
	}
	since := time.Now()
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		out, _ := shared.try("journalctl", "--no-pager", "-o", "short-precise", "--since", since.Format("2006-01-02 15:04:05"),
			"-u", "infinivirt-agent.service", "-u", "infinivirt-shim@*")
		t.Logf("journal since the test began:\n%s", tail(out, 20000))
	})
	return shared
}

func startBed() (b *bed, skip string, err error) {
	if os.Geteuid() != 0 {
		return nil, "the end-to-end tests need root (namespaces, systemd as PID 1, TAP devices)", nil
	}
	if err := testbed.Prerequisites(); err != nil {
		return nil, "test bed unavailable: " + err.Error(), nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	b = &bed{}
	b.nextIP.Store(10)
	defer func() {
		if err != nil {
			b.close()
		}
	}()
	if b.binDir, err = buildDaemons(ctx); err != nil {
		return nil, "", err
	}
	img, err := guest.Ensure(ctx, "")
	if err != nil {
		return nil, "", fmt.Errorf("test guest: %w", err)
	}
	if b.pg, err = postgres.Start(ctx, postgres.Options{}); err != nil {
		return nil, "", fmt.Errorf("postgres: %w", err)
	}
	env := fmt.Sprintf("INFINIVIRT_QEMU_ACCEL=tcg\nINFINIVIRT_DATABASE_URL=%s\nINFINIVIRT_ISO_DIRS=%s\n", b.pg.DSN(), imagesDir)
	if raceEnabled {
		env += "GORACE=halt_on_error=1\n"
	}
	root := moduleRoot()
	files := []testbed.File{
		{Path: "/usr/bin/infinivirt-agent", Source: filepath.Join(b.binDir, "infinivirt-agent")},
		{Path: "/usr/bin/infinivirt-shim", Source: filepath.Join(b.binDir, "infinivirt-shim")},
		{Path: "/usr/bin/infinivirtctl", Source: filepath.Join(b.binDir, "infinivirtctl")},
		{Path: "/etc/systemd/system/infinivirt-agent.service", Source: filepath.Join(root, "units/infinivirt-agent.service")},
		{Path: "/etc/systemd/system/infinivirt.slice", Source: filepath.Join(root, "units/infinivirt.slice")},
		{Path: "/usr/lib/sysusers.d/infinivirt.conf", Source: filepath.Join(root, "units/sysusers.d/infinivirt.conf")},
		{Path: "/usr/lib/tmpfiles.d/infinivirt.conf", Source: filepath.Join(root, "units/tmpfiles.d/infinivirt.conf")},
		{Path: "/etc/default/infinivirt", Data: []byte(env), Mode: 0o600},
		// The tests decide when the agent comes back after they kill it.
		{Path: "/etc/systemd/system/infinivirt-agent.service.d/e2e.conf", Data: []byte("[Service]\nRestart=no\n")},
		{Path: imagesDir + "/vmlinuz", Source: img.Kernel, Mode: 0o644},
		{Path: imagesDir + "/initramfs.gz", Source: img.Initrd, Mode: 0o644},
	}
	b.host, err = testbed.StartHost(ctx, testbed.HostOptions{
		Name:          "e2e",
		Files:         files,
		DieWithCaller: true, // a panicking or timed-out test binary leaks no host
		Binds:         []testbed.Bind{{Source: b.pg.SocketDir(), Target: b.pg.SocketDir()}},
	})
	if err != nil {
		return nil, "", fmt.Errorf("boot test-bed host: %w", err)
	}
	for _, cmd := range [][]string{
		{"systemd-sysusers"},
		{"systemd-tmpfiles", "--create", "/usr/lib/tmpfiles.d/infinivirt.conf"},
		{"ip", "link", "add", bridgeName, "type", "bridge"},
		{"ip", "addr", "add", bridgeCIDR, "dev", bridgeName},
		{"ip", "link", "set", bridgeName, "up"},
		{"systemctl", "daemon-reload"},
		{"systemctl", "start", "infinivirt-agent.service"},
	} {
		if _, err := b.host.Run(ctx, cmd...); err != nil {
			return nil, "", fmt.Errorf("prepare host: %v: %w", cmd, err)
		}
	}
	b.client = agentclient.New(b.host.Path(vmspec.DefaultLayout.AgentSocket()))
	if _, err := b.client.Health(ctx); err != nil {
		return nil, "", fmt.Errorf("agent health: %w", err)
	}
	if b.db, err = store.Open(ctx, b.pg.DSN(), store.Options{}); err != nil {
		return nil, "", fmt.Errorf("open store for assertions: %w", err)
	}
	return b, "", nil
}

func (b *bed) close() {
	if b.db != nil {
		b.db.Close()
	}
	if b.host != nil {
		if err := b.host.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "e2e: stop test bed:", err)
		}
	}
	if b.pg != nil {
		if err := b.pg.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "e2e: stop PostgreSQL:", err)
		}
	}
	if b.binDir != "" {
		if err := os.RemoveAll(b.binDir); err != nil {
			fmt.Fprintln(os.Stderr, "e2e: remove the binaries:", err)
		}
	}
}

// buildDaemons builds the three binaries once, with the race detector when
// the tests run under it, so that races in the daemons fail the suite too.
func buildDaemons(ctx context.Context) (string, error) {
	dir, err := os.MkdirTemp("", "infinivirt-e2e-bin-")
	if err != nil {
		return "", err
	}
	args := []string{"build", "-o", dir + "/"}
	if raceEnabled {
		args = append(args, "-race")
	}
	args = append(args, "./cmd/infinivirt-agent", "./cmd/infinivirt-shim", "./cmd/infinivirtctl")
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = moduleRoot()
	if !raceEnabled {
		// As shipped: static and pure Go (the race detector needs cgo).
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		_ = os.RemoveAll(dir) // a temp dir; the build's failure is what to report
		return "", fmt.Errorf("go build: %v\n%s", err, out)
	}
	return dir, nil
}

func moduleRoot() string {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		panic(err)
	}
	return filepath.Dir(strings.TrimSpace(string(out)))
}

// run runs a command inside the host and fails the test if it fails.
//
//nolint:contextcheck // a command on the test bed gets its own deadline, apart from the test's context
func (b *bed) run(t testing.TB, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := b.host.Run(ctx, args...)
	if err != nil {
		t.Fatalf("%v: %v", args, err)
	}
	return strings.TrimSpace(out)
}

// try runs a command inside the host and reports whether it succeeded.
//
//nolint:contextcheck // a command on the test bed gets its own deadline, apart from the test's context
func (b *bed) try(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := b.host.Run(ctx, args...)
	return strings.TrimSpace(out), err
}

// vmInput is a tiny test guest: 1 vCPU, 128 MiB, a 1 GiB disk, VNC with a password.
func (b *bed) vmInput(name string) (api.CreateVMInput, string) {
	ip := fmt.Sprintf("10.99.0.%d", b.nextIP.Add(1))
	return api.CreateVMInput{
		Name:            name,
		InternalName:    uuid.NewString(),
		OS:              "linux",
		CPUCores:        1,
		RAMGB:           0.125,
		DiskSizeGB:      1,
		NetworkBridge:   bridgeName,
		GraphicProtocol: "vnc",
		GraphicPassword: vncPassword,
		Boot: &api.DirectBoot{
			Kernel:  imagesDir + "/vmlinuz",
			Initrd:  imagesDir + "/initramfs.gz",
			Cmdline: fmt.Sprintf("console=ttyS0 panic=-1 tg.ip=%s/24 tg.host=%s", ip, name),
		},
		ShutdownTimeoutSec: 60,
	}, ip
}

// createVM creates and boots a test guest and waits for its ready line.
func (b *bed) createVM(t testing.TB, name string) api.VM {
	t.Helper()
	in, _ := b.vmInput(name)
	return b.createVMFrom(t, in)
}

// createVMFrom creates and boots a VM from in, waits for the test guest's
// ready line, and deletes the VM when the test ends.
func (b *bed) createVMFrom(t testing.TB, in api.CreateVMInput) api.VM {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), guestTimeout)
	defer cancel()
	vm, err := b.client.Create(ctx, in)
	if err != nil {
		t.Fatalf("create %s: %v", in.Name, err)
	}
	t.Cleanup(func() { b.deleteVM(vm.ID) })
	b.waitConsole(t, vm.ID, "TESTGUEST READY", 1)
	return vm
}

func (b *bed) deleteVM(id string) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := b.client.Delete(ctx, id, true); err != nil && !errors.Is(err, &errdefs.Error{Code: errdefs.CodeNotFound}) {
		fmt.Fprintf(os.Stderr, "e2e: delete VM %s: %v\n", id, err)
	}
}

// waitConsole waits until the guest's console shows want at least n times.
func (b *bed) waitConsole(t testing.TB, id, want string, n int) string {
	t.Helper()
	var out string
	b.eventually(t, guestTimeout, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		var err error
		if out, err = b.client.Console(ctx, id); err != nil {
			return err
		}
		if got := strings.Count(out, want); got < n {
			return fmt.Errorf("console shows %q %d times, want %d; tail:\n%s", want, got, n, tail(out, 600))
		}
		return nil
	})
	return out
}

// waitStatus waits until the API shows status (and reason, when given).
func (b *bed) waitStatus(t testing.TB, id string, status api.Status, reason api.Reason) api.VM {
	t.Helper()
	var vm api.VM
	b.eventually(t, guestTimeout, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		var err error
		if vm, err = b.client.Get(ctx, id); err != nil {
			return err
		}
		if vm.Status != status || (reason != "" && vm.Reason != reason) {
			return fmt.Errorf("API says %s (%s) %q, want %s (%s)", vm.Status, vm.Reason, vm.Message, status, reason)
		}
		return nil
	})
	return vm
}

// waitDB waits until PostgreSQL shows status (and reason, when given).
func (b *bed) waitDB(t testing.TB, id string, status api.Status, reason api.Reason) store.Row {
	t.Helper()
	var row store.Row
	b.eventually(t, time.Minute, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		var err error
		if row, err = b.db.GetVM(ctx, id); err != nil {
			return err
		}
		if row.Status != status || (reason != "" && row.Reason != reason) {
			return fmt.Errorf("PostgreSQL says %s (%s) %q, want %s (%s)", row.Status, row.Reason, row.Message, status, reason)
		}
		return nil
	})
	return row
}

// eventually retries check until it passes or the budget runs out. It is a
// deadline for the test, not a timing assertion: the budget is generous.
func (b *bed) eventually(t testing.TB, budget time.Duration, check func() error) {
	t.Helper()
	deadline := time.Now().Add(budget)
	for {
		err := check()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("gave up after %s: %v", budget, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (b *bed) shim(id string) *shimclient.Client {
	return shimclient.NewClient(b.host.Path(vmspec.DefaultLayout.ShimSocket(id)))
}

func (b *bed) unitProperty(t testing.TB, id, prop string) string {
	return b.run(t, "systemctl", "show", "-p", prop, "--value", vmspec.UnitName(id))
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

func isAPIError(err error, code errdefs.Code, field string) bool {
	var e *errdefs.Error
	return errors.As(err, &e) && e.Code == code && (field == "" || e.Field == field)
}
