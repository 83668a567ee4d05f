// Command infinivirt-shim runs one VM under systemd: `run` is the unit's
// ExecStart, `cleanup` its ExecStopPost.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"

	"github.com/coreos/go-systemd/v22/daemon"

	"github.com/infinibay/infinivirt/pkg/api"
	"github.com/infinibay/infinivirt/pkg/logging"
	"github.com/infinibay/infinivirt/pkg/shimapi"
	"github.com/infinibay/infinivirt/pkg/vmspec"
	"github.com/infinibay/infinivirt/shim"
)

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	verb, args := os.Args[1], os.Args[2:]
	fs := flag.NewFlagSet("infinivirt-shim "+verb, flag.ExitOnError)
	id := fs.String("id", "", "VM UUID")
	stateDir := fs.String("state-dir", vmspec.DefaultLayout.StateDir, "persistent state directory")
	runDir := fs.String("run-dir", vmspec.DefaultLayout.RunDir, "runtime directory")
	qemuBin := fs.String("qemu", "qemu-system-x86_64", "QEMU system emulator")
	qemuImg := fs.String("qemu-img", "qemu-img", "qemu-img binary")
	qemuUser := fs.String("qemu-user", "", "run QEMU as this user (empty: as the shim)")
	debugLog := fs.Bool("debug", false, "log startup steps")
	fwMode := fs.String("firewall", string(shimapi.FirewallOff), "firewall mode: off, conntrack or stateless")
	fwReject := fs.Bool("firewall-reject", false, "the kernel can REJECT in the bridge family")
	_ = fs.Parse(args) // ExitOnError: a bad flag exits here
	if !vmspec.ValidID(*id) {
		// The id names directories the shim creates and removes.
		fmt.Fprintf(os.Stderr, "infinivirt-shim: --id must be a VM's lower-case UUID, got %q\n", *id)
		os.Exit(2)
	}
	level := slog.LevelInfo
	if *debugLog {
		level = slog.LevelDebug
	}
	log := logging.New("infinivirt-shim", os.Stderr, level)
	layout := vmspec.Layout{StateDir: *stateDir, RunDir: *runDir}
	switch shimapi.FirewallMode(*fwMode) {
	case shimapi.FirewallOff, shimapi.FirewallConntrack, shimapi.FirewallStateless:
	default:
		fmt.Fprintf(os.Stderr, "infinivirt-shim: --firewall must be off, conntrack or stateless, got %q\n", *fwMode)
		os.Exit(2)
	}

	switch verb {
	case "run":
		// The shim is small and long-lived: keep its heap tight.
		debug.SetGCPercent(50)
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
		defer stop()
		s := shim.New(shim.Config{
			VMID:           *id,
			Layout:         layout,
			QEMUBinary:     *qemuBin,
			QEMUImg:        *qemuImg,
			QEMUUser:       *qemuUser,
			Firewall:       shimapi.FirewallMode(*fwMode),
			FirewallReject: *fwReject,
			StartReason:    api.Reason(os.Getenv("INFINIVIRT_START_REASON")),
			Logger:         log,
			Notify: func(state string) {
				// Unsent, READY=1 leaves systemd waiting until the start times out.
				if _, err := daemon.SdNotify(false, state); err != nil {
					log.Warn("sd_notify failed", "ERROR", err.Error())
				}
			},
		})
		os.Exit(s.Run(ctx))
	case "cleanup":
		err := shim.Cleanup(context.Background(), shim.CleanupConfig{
			VMID:           *id,
			Layout:         layout,
			Logger:         log,
			Firewall:       shimapi.FirewallMode(*fwMode),
			FirewallReject: *fwReject,
			ServiceResult:  os.Getenv("SERVICE_RESULT"),
			ExitCode:       os.Getenv("EXIT_CODE"),
			ExitStatus:     os.Getenv("EXIT_STATUS"),
		})
		if err != nil {
			os.Exit(1)
		}
	default:
		usage()
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: infinivirt-shim run|cleanup --id UUID [--state-dir DIR] [--run-dir DIR]")
	os.Exit(2)
}
