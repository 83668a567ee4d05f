// Command infinivirt-agent is the host agent: it wires systemd (the
// supervisor), the optional PostgreSQL store and the API socket together.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"os"
	"os/signal"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"

	"github.com/infinibay/infinivirt/agent"
	"github.com/infinibay/infinivirt/agent/dbsync"
	"github.com/infinibay/infinivirt/agent/httpapi"
	"github.com/infinibay/infinivirt/pkg/logging"
	"github.com/infinibay/infinivirt/pkg/store"
	"github.com/infinibay/infinivirt/pkg/vmspec"
	"github.com/infinibay/infinivirt/supervisor"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "infinivirt-agent:", err)
		os.Exit(1)
	}
}

func run() error {
	layout := vmspec.DefaultLayout
	var (
		socket, group, dsn, accel, listen   string
		shimBin, qemuBin, qemuImg, qemuUser string
		fwMode                              string
		virtioWin, uefiCode, uefiVars       string
		romDir                              string
		isoDirs                             dirList
		overcommit                          float64
		reserveMiB                          int
		debug                               bool
	)
	limits := agent.DefaultServerLimits
	flag.StringVar(&layout.StateDir, "state-dir", layout.StateDir, "persistent state: VM specs, disks, event logs")
	flag.StringVar(&layout.RunDir, "run-dir", layout.RunDir, "runtime directory: sockets")
	flag.StringVar(&socket, "socket", "", "API socket (default <run-dir>/agent.sock)")
	flag.StringVar(&group, "socket-group", "infinivirt", "group allowed on the API socket")
	flag.StringVar(&dsn, "database-url", os.Getenv("INFINIVIRT_DATABASE_URL"), "PostgreSQL DSN (env INFINIVIRT_DATABASE_URL); empty runs without a database")
	flag.StringVar(&accel, "accel", envOr("INFINIVIRT_QEMU_ACCEL", "kvm"), "default accelerator, kvm or tcg (env INFINIVIRT_QEMU_ACCEL)")
	flag.StringVar(&listen, "graphics-listen", "127.0.0.1", "address VNC and SPICE listen on")
	flag.StringVar(&shimBin, "shim", siblingBinary("infinivirt-shim"), "infinivirt-shim binary")
	flag.StringVar(&qemuBin, "qemu", "qemu-system-x86_64", "QEMU system emulator")
	flag.StringVar(&qemuImg, "qemu-img", "qemu-img", "qemu-img binary")
	flag.StringVar(&qemuUser, "qemu-user", defaultQEMUUser(), "run QEMU as this user (empty: root)")
	flag.StringVar(&fwMode, "firewall", agent.FirewallAuto, "auto (conntrack if the kernel has it, else stateless), conntrack, stateless or off")
	flag.StringVar(&virtioWin, "virtio-win", "", "virtio-win driver ISO for Windows installs (empty: search the usual places)")
	flag.StringVar(&uefiCode, "uefi-code", agent.DefaultUEFICode, "OVMF Secure Boot firmware for Windows VMs")
	flag.StringVar(&uefiVars, "uefi-vars", agent.DefaultUEFIVars, "OVMF variable store with Microsoft's keys, copied for each Windows VM")
	flag.StringVar(&romDir, "rom-dir", "", "the only directory PCI devices' option ROM files may come from (default <state-dir>/roms)")
	flag.IntVar(&limits.ConnsPerUID, "conns-per-uid", limits.ConnsPerUID, "connections each peer uid may hold on the API socket (0: no cap)")
	flag.Var(&isoDirs, "iso-dir", "a directory CD-ROM media and install ISOs may come from, and no other file is one; repeat it for more (env INFINIVIRT_ISO_DIRS, colon-separated; default <state-dir>/isos)")
	overcommit = agent.DefaultMemoryOvercommit
	if v := os.Getenv("INFINIVIRT_MEMORY_OVERCOMMIT"); v != "" {
		f, err := strconv.ParseFloat(v, 64)
		if err != nil {
			return fmt.Errorf("INFINIVIRT_MEMORY_OVERCOMMIT must be a ratio such as 1.0 or 1.5, got %q", v)
		}
		overcommit = f
	}
	flag.Float64Var(&overcommit, "memory-overcommit", overcommit,
		"how many times the host's memory the running VMs may hold together (env INFINIVIRT_MEMORY_OVERCOMMIT)")
	flag.IntVar(&reserveMiB, "memory-reserve-mib", -1, "host memory, MiB, no VM may have (-1: 1 GiB, or a tenth of a host under 10 GiB)")
	flag.BoolVar(&debug, "debug", false, "debug logging")
	flag.Parse()
	if !(overcommit > 0) || math.IsInf(overcommit, 0) {
		return fmt.Errorf("--memory-overcommit must be a ratio above 0, such as 1.0 or 1.5, got %v", overcommit)
	}
	if reserveMiB < -1 {
		return fmt.Errorf("--memory-reserve-mib must be -1 (the default) or a size in MiB, got %d", reserveMiB)
	}
	if len(isoDirs) == 0 {
		isoDirs = filepath.SplitList(os.Getenv("INFINIVIRT_ISO_DIRS"))
	}
	for _, d := range isoDirs {
		if !filepath.IsAbs(d) {
			return fmt.Errorf("--iso-dir must be an absolute path, got %q", d)
		}
	}
	if socket == "" {
		socket = layout.AgentSocket()
	}
	if accel != "kvm" && accel != "tcg" {
		return fmt.Errorf("--accel must be kvm or tcg, got %q", accel)
	}
	if dsn != "" {
		// The database may be down now, and the agent waits for it; a
		// setting that can never connect is refused at once.
		if err := store.CheckDSN(dsn); err != nil {
			return fmt.Errorf("--database-url: %w", err)
		}
	}
	level := slog.LevelInfo
	if debug {
		level = slog.LevelDebug
	}
	log := logging.New("infinivirt-agent", os.Stderr, level)

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()

	sup, err := supervisor.New(ctx, supervisor.Options{})
	if err != nil {
		return fmt.Errorf("systemd: %w", err)
	}
	defer sup.Close()

	cfg := agent.Config{
		Layout: layout, Accel: accel, GraphicsListen: listen,
		ShimBinary: shimBin, QEMUBinary: qemuBin, QEMUImg: qemuImg, QEMUUser: qemuUser,
		Firewall: fwMode, Units: sup, Logger: log,
		VirtioWin: virtioWin, UEFICode: uefiCode, UEFIVars: uefiVars, ROMDir: romDir,
		ISODirs: isoDirs, MemoryOvercommit: overcommit, MemoryReserveMiB: reserveMiB,
	}
	if dsn != "" {
		cfg.Store = dbsync.NewLazyStore(ctx, func(ctx context.Context) (dbsync.Store, error) {
			return store.Open(ctx, dsn, store.Options{Logger: log})
		}, log)
	}
	a := agent.New(cfg)
	if err := a.Start(ctx); err != nil {
		return err
	}
	ln, err := agent.Listen(socket, group, limits.ConnsPerUID, log)
	if err != nil {
		return fmt.Errorf("API socket: %w", err)
	}
	// Requests end with the agent: event streams close, and a create
	// still under way rolls back rather than being cut half-done.
	srv := agent.NewServer(ctx, httpapi.Handler(a), limits)
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownGrace)
		defer cancel()
		if err := srv.Shutdown(sctx); err != nil {
			log.Warn("requests still running at exit", "ERROR", err.Error())
		}
	}()
	if _, err := daemon.SdNotify(false, daemon.SdNotifyReady); err != nil {
		log.Warn("sd_notify failed; systemd may time the start out", "ERROR", err.Error())
	}
	log.Info("agent ready", "SOCKET", socket, "ACCEL", accel, "DATABASE", dsn != "")
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	// Serve returns as soon as Shutdown starts; the requests it waits for
	// are what the grace is for.
	<-stopped
	return nil
}

// shutdownGrace bounds the wait for requests under way when the agent stops
// (their rollbacks included); the agent's unit allows 30 s to stop.
const shutdownGrace = 20 * time.Second

// dirList is a flag given once per directory.
type dirList []string

func (l *dirList) String() string { return strings.Join(*l, ":") }

func (l *dirList) Set(v string) error {
	*l = append(*l, filepath.Clean(v))
	return nil
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

// siblingBinary finds a binary installed beside the agent's own.
func siblingBinary(name string) string {
	exe, err := os.Executable()
	if err != nil {
		return name
	}
	return filepath.Join(filepath.Dir(exe), name)
}

// defaultQEMUUser is the packaged unprivileged account, when it exists.
func defaultQEMUUser() string {
	if _, err := user.Lookup("infinivirt-qemu"); err == nil {
		return "infinivirt-qemu"
	}
	return ""
}
