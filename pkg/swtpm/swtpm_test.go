package swtpm

import (
	"context"
	"errors"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

func needSWTPM(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath(DefaultBinary); err != nil {
		t.Skip("swtpm is not installed (Debian package swtpm)")
	}
}

func TestStartAnswersAndStops(t *testing.T) {
	needSWTPM(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var mu sync.Mutex
	var lines []string
	p, ctrl, err := Start(ctx, Options{StateDir: t.TempDir(), Log: func(l string) {
		mu.Lock()
		lines = append(lines, l)
		mu.Unlock()
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer ctrl.Close()
	if err := syscall.Kill(p.PID(), 0); err != nil {
		t.Fatalf("swtpm pid %d is not alive: %v", p.PID(), err)
	}
	// The channel is still usable after Start's own check.
	if err := p.ping(ctx, ctrl); err != nil {
		t.Fatalf("second capability query: %v", err)
	}
	p.Stop()
	select {
	case <-p.Done():
	default:
		t.Fatal("Stop returned before swtpm was reaped")
	}
	if err := syscall.Kill(p.PID(), 0); err == nil {
		t.Fatal("swtpm still alive after Stop")
	}
	p.Stop() // idempotent
}

func TestStartFailsWithReason(t *testing.T) {
	needSWTPM(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, _, err := Start(ctx, Options{StateDir: filepath.Join(t.TempDir(), "missing")})
	var e *Error
	if !errors.As(err, &e) || e.Op != "state directory" {
		t.Fatalf("missing state dir: %v", err)
	}
	// swtpm itself refuses: an option it does not know comes from a bad binary here.
	_, _, err = Start(ctx, Options{StateDir: t.TempDir(), Binary: "/bin/false"})
	if !errors.As(err, &e) || e.Op != "control channel" || !strings.Contains(err.Error(), "exited") {
		t.Fatalf("a binary that exits at once: %v", err)
	}
}
