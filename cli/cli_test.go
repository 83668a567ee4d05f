package cli

import (
	"bytes"
	"errors"
	"path/filepath"
	"testing"

	"github.com/infinibay/infinivirt/pkg/errdefs"
)

// A bad -o is refused before the agent is asked anything: the socket here
// does not exist, so any call would fail with a connection error instead.
func TestBadOutputIsRefusedBeforeTheCall(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "none.sock")
	run := func(args ...string) error {
		var out bytes.Buffer
		root := NewRoot(&out)
		root.SetArgs(append([]string{"--socket", sock}, args...))
		err := root.Execute()
		if out.Len() != 0 {
			t.Errorf("%v printed %q", args, out.String())
		}
		return err
	}
	outputErr := &errdefs.Error{Code: errdefs.CodeInvalidArgument, Field: "output"}
	for _, args := range [][]string{
		{"-o", "yaml", "vm", "power-off", "vm1"},
		{"-o", "yaml", "vm", "delete", "vm1"},
		{"-o", "yaml", "vm", "firewall", "get", "vm1"},
		{"-o", "yaml", "health"},
	} {
		if err := run(args...); !errors.Is(err, outputErr) {
			t.Errorf("%v: err %v, want InvalidArgument on output", args, err)
		}
	}
	if err := run("-o", "json", "vm", "delete", "vm1"); err == nil || errors.Is(err, outputErr) {
		t.Errorf("-o json: err %v, want the failed call's", err)
	}
}
