package store

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/infinibay/infinivirt/pkg/api"
	"github.com/infinibay/infinivirt/pkg/errdefs"
	"github.com/infinibay/infinivirt/pkg/testbed/postgres"
)

// Most tests share one server and get a database each; tests that stop or
// restart the server start their own cluster.
var shared struct {
	once    sync.Once
	cluster *postgres.Cluster
	err     error
	dbs     atomic.Int64
}

func TestMain(m *testing.M) {
	code := m.Run()
	if shared.cluster != nil {
		if err := shared.cluster.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "stopping the shared test cluster:", err)
		}
	}
	os.Exit(code)
}

func sharedCluster(t testing.TB) *postgres.Cluster {
	t.Helper()
	shared.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		shared.cluster, shared.err = postgres.Start(ctx, postgres.Options{})
	})
	switch err := shared.err; {
	case errors.Is(err, postgres.ErrNotRoot), errors.Is(err, postgres.ErrNoPostgresUser), errors.Is(err, postgres.ErrNoBinaries):
		t.Skip(err.Error())
	case err != nil:
		t.Fatal(err)
	}
	return shared.cluster
}

// freshDSN creates an empty database on the shared cluster.
func freshDSN(t testing.TB) string {
	t.Helper()
	c := sharedCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	dsn, err := c.CreateDatabase(ctx, fmt.Sprintf("t%d", shared.dbs.Add(1)))
	if err != nil {
		t.Fatal(err)
	}
	return dsn
}

func openStore(t testing.TB, dsn string) *Store {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	log := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
	s, err := Open(ctx, dsn, Options{Host: "host-a", ReconnectDelay: 100 * time.Millisecond, Logger: log})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(s.Close)
	return s
}

func newStore(t testing.TB) *Store {
	t.Helper()
	return openStore(t, freshDSN(t))
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func testVM() api.VM {
	return api.VM{
		ID:              uuid.NewString(),
		Name:            "desk-01",
		OS:              "ubuntu",
		CPUCores:        2,
		RAMGB:           0.5,
		DiskSizeGB:      1.5,
		MACAddress:      "52:54:00:12:34:56",
		NetworkBridge:   "virbr0",
		GraphicProtocol: "spice",
		GraphicListen:   "127.0.0.1",
		GraphicPort:     5901,
	}
}

func statusEvent(vmID string, seq uint64, st api.Status, r api.Reason) api.Event {
	return api.Event{Seq: seq, VMID: vmID, Time: time.Now(), Type: api.EventStatus, Status: st, Reason: r}
}

func progressEvent(vmID string, seq uint64, msg string) api.Event {
	return api.Event{Seq: seq, VMID: vmID, Time: time.Now(), Type: api.EventProgress, Message: msg}
}

// listen runs Listen for the rest of the test and returns what it delivers.
func listen(t testing.TB, s *Store) <-chan string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ch := make(chan string, 1024)
	done := make(chan error, 1)
	go func() { done <- s.Listen(ctx, func(id string) { ch <- id }) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Errorf("Listen returned %v, want context.Canceled", err)
		}
	})
	return ch
}

// next returns the next delivered id. The timeout only guards against a hang.
func next(t testing.TB, ch <-chan string) string {
	t.Helper()
	select {
	case id := <-ch:
		return id
	case <-time.After(30 * time.Second):
		t.Fatal("no notification within 30 s")
		return ""
	}
}

func expectNext(t testing.TB, ch <-chan string, want string) {
	t.Helper()
	if got := next(t, ch); got != want {
		t.Fatalf("notification %q, want %q", got, want)
	}
}

// expectQuiet proves nothing was notified since the last expected id: NOTIFYs
// arrive in commit order, so a marker sent now must be the next one seen.
func expectQuiet(t testing.TB, s *Store, ch <-chan string) {
	t.Helper()
	marker := "marker-" + uuid.NewString()
	if _, err := s.pool.Exec(ctxT(t), `SELECT pg_notify($1, $2)`, NotifyChannel, marker); err != nil {
		t.Fatal(err)
	}
	if got := next(t, ch); got != marker {
		t.Fatalf("unexpected notification %q", got)
	}
}

// listenedVM is a fresh store with a LISTEN active and a VM row written,
// its NOTIFY seen.
func listenedVM(t testing.TB) (*Store, <-chan string, api.VM) {
	t.Helper()
	s := newStore(t)
	ch := listen(t, s)
	expectNext(t, ch, ResyncAll)
	vm := testVM()
	if err := s.UpsertVM(ctxT(t), vm); err != nil {
		t.Fatal(err)
	}
	expectNext(t, ch, vm.ID)
	return s, ch, vm
}

func mustGet(t testing.TB, s *Store, id string) Row {
	t.Helper()
	r, err := s.GetVM(ctxT(t), id)
	if err != nil {
		t.Fatalf("GetVM: %v", err)
	}
	return r
}

func errCode(err error) errdefs.Code {
	var e *errdefs.Error
	if errors.As(err, &e) {
		return e.Code
	}
	return ""
}
