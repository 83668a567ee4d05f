package postgres

import (
	"context"
	"errors"
	"testing"
	"time"
)

// New starts a cluster for one test and removes it when the test ends. It
// skips the test, naming the reason, when this machine cannot run one
// (not root, no postgres user, no server binaries).
func New(t testing.TB) *Cluster {
	t.Helper()
	return NewWithOptions(t, Options{})
}

// NewWithOptions is New with options.
func NewWithOptions(t testing.TB, opts Options) *Cluster {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c, err := Start(ctx, opts)
	switch {
	case errors.Is(err, ErrNotRoot), errors.Is(err, ErrNoPostgresUser), errors.Is(err, ErrNoBinaries):
		t.Skip(err.Error())
	case err != nil:
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := c.Stop(); err != nil {
			t.Errorf("stopping test cluster: %v", err)
		}
	})
	return c
}
