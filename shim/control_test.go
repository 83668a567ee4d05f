package shim

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/infinibay/infinivirt/pkg/api"
	"github.com/infinibay/infinivirt/pkg/errdefs"
	"github.com/infinibay/infinivirt/pkg/eventlog"
	"github.com/infinibay/infinivirt/pkg/shimapi"
	"github.com/infinibay/infinivirt/pkg/shimclient"
	"github.com/infinibay/infinivirt/shim/internal/tinyhttp"
)

// The control socket serves exactly the protocol's table: a verb in the
// table without a handler, or a handler outside it, fails here.
func TestControlServerServesTheRouteTable(t *testing.T) {
	var want []string
	for _, r := range shimapi.Routes {
		want = append(want, r.Pattern())
	}
	slices.Sort(want)
	if got := New(Config{}).controlServer().Patterns(); !slices.Equal(got, want) {
		t.Fatalf("served %v, the table has %v", got, want)
	}
}

// Every verb, through shimclient, against the shim's own server on a real
// socket, with a fake QEMU behind QMP.
func TestControlSocketSpeaksTheTable(t *testing.T) {
	s, fake := newSupervisedShim(t, 2)
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	l, err := eventlog.Open(ctx, filepath.Join(dir, "events"), s.cfg.VMID)
	if err != nil {
		t.Fatal(err)
	}
	s.events = l
	defer l.Close()
	ours, guestEnd, err := socketpair("serial")
	if err != nil {
		t.Fatal(err)
	}
	// The guest's end as a net.Conn, which takes a read deadline.
	theirs, err := net.FileConn(guestEnd)
	guestEnd.Close()
	if err != nil {
		t.Fatal(err)
	}
	defer theirs.Close()
	s.console = newConsole(ours)
	go s.console.pump(s.log)
	defer s.console.Close()

	sock := filepath.Join(dir, "shim.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := s.controlServer()
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ctx, ln) }()
	defer func() {
		if err := srv.Shutdown(ctx); err != nil {
			t.Logf("shutdown cut requests still running: %v", err)
		}
		if err := <-served; err != nil {
			t.Errorf("serve: %v", err)
		}
	}()
	c := shimclient.NewClient(sock)
	defer c.Close()

	if st, err := c.Status(ctx); err != nil || st.Status != api.StatusRunning || st.VMID != s.cfg.VMID {
		t.Fatalf("status: %+v %v", st, err)
	}
	if st, err := c.Power(ctx, api.Suspend); err != nil || st.Status != api.StatusSuspended || fake.count("stop") != 1 {
		t.Fatalf("suspend: %+v %v (stop sent %d times)", st, err, fake.count("stop"))
	}
	if _, err := c.Power(ctx, "hibernate"); errdefs.As(err).Field != "op" {
		t.Fatalf("an unknown op: %v", err)
	}

	if _, err := theirs.Write([]byte("login: root\n")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, func() bool { return strings.Contains(string(s.console.Tail()), "login: root") })
	if tail, err := c.Console(ctx); err != nil || string(tail) != "login: root\n" {
		t.Fatalf("console: %q %v", tail, err)
	}
	if err := c.ConsoleInput(ctx, []byte("ls\n")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 16)
	if err := theirs.SetReadDeadline(time.Now().Add(5 * time.Second)); err != nil {
		t.Fatal(err)
	}
	if n, err := theirs.Read(buf); err != nil || string(buf[:n]) != "ls\n" {
		t.Fatalf("the guest read %q %v", buf[:n], err)
	}

	// The backlog, then a live entry, then the end of the stream when the
	// log closes.
	s.progress("live")
	var seen []api.Event
	err = c.Events(ctx, 0, func(e api.Event) error {
		seen = append(seen, e)
		if e.Message == "live" {
			l.Close()
		}
		return nil
	})
	if err != nil || len(seen) != 2 || seen[0].Status != api.StatusSuspended || seen[1].Message != "live" {
		t.Fatalf("events: %+v %v", seen, err)
	}
	// A closed log answers Unavailable, in the typed error shape.
	if err := c.Events(ctx, 0, func(api.Event) error { return nil }); !errors.Is(err, &errdefs.Error{Code: errdefs.CodeUnavailable}) {
		t.Fatalf("events of a closed log: %v", err)
	}
}

// brokenListener fails every Accept, as a listener out of descriptors does.
type brokenListener struct{ net.Listener }

func (brokenListener) Accept() (net.Conn, error) {
	return nil, errors.New("accept: too many open files")
}
func (brokenListener) Close() error { return nil }

// A control socket that stops serving before teardown leaves the VM out of
// the agent's reach: that is logged, not dropped.
func TestControlSocketEndIsLogged(t *testing.T) {
	var logs bytes.Buffer
	s := New(Config{VMID: "0f8fad5b-d9cb-469f-a165-70867728950e", Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	s.serve(t.Context(), tinyhttp.New(), brokenListener{})
	if !strings.Contains(logs.String(), "control socket stopped serving") || !strings.Contains(logs.String(), "too many open files") {
		t.Fatalf("log %q does not report the end of the control socket", logs.String())
	}
}

// query-block on real QEMU: a disk, a CD-ROM with its ISO, and an empty
// one, named by their device ids.
func TestQueryBlockNamesDisksAndMedia(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	dir := t.TempDir()
	disk, iso := filepath.Join(dir, "disk.raw"), filepath.Join(dir, "cd.iso")
	for _, p := range []string{disk, iso} {
		if err := os.WriteFile(p, make([]byte, 1<<20), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	blockdev := func(id, path, format string, ro bool) []string {
		return []string{
			"-blockdev", fmt.Sprintf(`{"driver":"file","node-name":"%s-file","filename":%q,"read-only":%t}`, id, path, ro),
			"-blockdev", fmt.Sprintf(`{"driver":%q,"node-name":%q,"file":"%s-file","read-only":%t}`, format, id, id, ro),
		}
	}
	args := slices.Concat(blockdev("disk0", disk, "raw", false),
		[]string{"-device", `{"driver":"virtio-blk-pci","id":"disk0","drive":"disk0"}`},
		blockdev("cd0", iso, "raw", true),
		[]string{"-device", `{"driver":"ide-cd","id":"cd0","drive":"cd0","bus":"ide.0"}`,
			"-device", `{"driver":"ide-cd","id":"cd1","bus":"ide.1"}`})
	c, p := bareQEMU(t, ctx, args...)
	s := New(Config{})
	s.qmp, s.qemu = c, p
	got, err := s.queryBlock(ctx, shimapi.BlockRequest{})
	if err != nil {
		t.Fatal(err)
	}
	want := []api.BlockDevice{
		{Name: "disk0", File: disk, Format: "raw", MediumInserted: true},
		{Name: "cd0", File: iso, Format: "raw", ReadOnly: true, Removable: true, MediumInserted: true},
		{Name: "cd1", Removable: true},
	}
	if !slices.Equal(got.Devices, want) {
		t.Fatalf("query-block:\n got %+v\nwant %+v", got.Devices, want)
	}
}
