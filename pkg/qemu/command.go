package qemu

import (
	"context"
	"os"
	"os/exec"
	"strings"
)

// DefaultBinary is the QEMU system emulator, looked up in PATH.
const DefaultBinary = "qemu-system-x86_64"

// Command returns the command that runs QEMU for cfg. binary may be empty
// for DefaultBinary. The caller adds what only it knows: ExtraFiles in the
// order of the fds in cfg (fd 3 is ExtraFiles[0]), credentials, stdio.
// Cancelling ctx kills QEMU.
func Command(ctx context.Context, binary string, cfg *Config) (*exec.Cmd, error) {
	args, err := cfg.Args()
	if err != nil {
		return nil, err
	}
	if binary == "" {
		binary = DefaultBinary
	}
	cmd := exec.CommandContext(ctx, binary, args...)
	cmd.Env = childEnv(os.Environ())
	return cmd, nil
}

// childEnv drops the variables systemd hands to the shim itself: QEMU must
// not send sd_notify messages in the shim's name nor take its sockets.
func childEnv(env []string) []string {
	out := make([]string, 0, len(env))
	for _, kv := range env {
		name, _, _ := strings.Cut(kv, "=")
		switch name {
		case "NOTIFY_SOCKET", "LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES", "WATCHDOG_PID", "WATCHDOG_USEC":
			continue
		}
		out = append(out, kv)
	}
	return out
}
