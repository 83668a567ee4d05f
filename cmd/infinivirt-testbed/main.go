// Command infinivirt-testbed boots a test-bed host (a real systemd as PID 1
// of private namespaces, see pkg/testbed) that outlives the command, and
// runs commands in it or stops it later.
//
//	infinivirt-testbed up     --state DIR [--name NAME] [--file SRC:DST]... [--bind SRC:DST]...
//	infinivirt-testbed exec   --state DIR -- COMMAND [ARG]...
//	infinivirt-testbed status --state DIR
//	infinivirt-testbed down   --state DIR
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/infinibay/infinivirt/pkg/testbed"
)

const stateFile = "host.json"

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

func usage(w io.Writer) {
	fmt.Fprint(w, `usage:
  infinivirt-testbed up     --state DIR [--name NAME] [--file SRC:DST]... [--bind SRC:DST]...
  infinivirt-testbed exec   --state DIR -- COMMAND [ARG]...
  infinivirt-testbed status --state DIR
  infinivirt-testbed down   --state DIR
`)
}

// pairs is a repeatable SRC:DST flag.
type pairs [][2]string

func (p *pairs) String() string { return fmt.Sprint(*p) }

func (p *pairs) Set(v string) error {
	src, dst, ok := strings.Cut(v, ":")
	if !ok || src == "" || dst == "" {
		return fmt.Errorf("want SRC:DST, got %q", v)
	}
	*p = append(*p, [2]string{src, dst})
	return nil
}

func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return 2
	}
	verb := args[0]
	fs := flag.NewFlagSet("infinivirt-testbed "+verb, flag.ContinueOnError)
	fs.SetOutput(stderr)
	state := fs.String("state", "", "directory that holds the host's state file (required)")
	var name string
	var files, binds pairs
	timeout := fs.Duration("timeout", 2*time.Minute, "deadline for the whole command (not for exec)")
	if verb == "up" {
		fs.StringVar(&name, "name", "testbed", "the host's name")
		fs.Var(&files, "file", "copy machine file SRC to DST inside the host before boot (repeatable)")
		fs.Var(&binds, "bind", "bind-mount machine path SRC onto DST inside the host (repeatable)")
	}
	if err := fs.Parse(args[1:]); err != nil {
		return 2
	}
	if *state == "" {
		fmt.Fprintln(stderr, "--state is required")
		return 2
	}
	path := filepath.Join(*state, stateFile)
	ctx := context.Background()

	var err error
	switch verb {
	case "up":
		ctx, cancel := context.WithTimeout(ctx, *timeout)
		defer cancel()
		err = up(ctx, *state, path, name, files, binds, stdout)
	case "exec":
		if fs.NArg() == 0 {
			fmt.Fprintln(stderr, "exec needs a command after --")
			return 2
		}
		return execIn(ctx, path, fs.Args(), stdin, stdout, stderr)
	case "status":
		ctx, cancel := context.WithTimeout(ctx, *timeout)
		defer cancel()
		err = status(ctx, path, stdout)
	case "down":
		err = down(path)
	default:
		usage(stderr)
		return 2
	}
	if err != nil {
		fmt.Fprintln(stderr, "infinivirt-testbed:", err)
		return 1
	}
	return 0
}

func up(ctx context.Context, dir, path, name string, files, binds pairs, stdout io.Writer) error {
	if _, err := os.Stat(path); err == nil {
		return fmt.Errorf("%s exists: a host was already brought up with this state (run down first)", path)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	opts := testbed.HostOptions{Name: name, WorkDir: dir}
	for _, f := range files {
		opts.Files = append(opts.Files, testbed.File{Source: f[0], Path: f[1]})
	}
	for _, b := range binds {
		opts.Binds = append(opts.Binds, testbed.Bind{Source: b[0], Target: b[1]})
	}
	h, err := testbed.StartHost(ctx, opts)
	if err != nil {
		return err
	}
	if err := h.SaveState(path); err != nil {
		return errors.Join(err, h.Stop())
	}
	fmt.Fprintln(stdout, h.PID())
	return nil
}

func execIn(ctx context.Context, path string, argv []string, stdin io.Reader, stdout, stderr io.Writer) int {
	h, err := testbed.Attach(path)
	if err != nil {
		fmt.Fprintln(stderr, "infinivirt-testbed:", err)
		return 1
	}
	cmd := h.Command(ctx, argv[0], argv[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdin, stdout, stderr
	// Stay in the terminal's process group so that interactive commands
	// can read from it.
	cmd.SysProcAttr = nil
	if err := cmd.Run(); err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) && ee.ExitCode() >= 0 {
			return ee.ExitCode()
		}
		fmt.Fprintln(stderr, "infinivirt-testbed:", err)
		return 1
	}
	return 0
}

func status(ctx context.Context, path string, stdout io.Writer) error {
	h, err := testbed.Attach(path)
	if err != nil {
		return err
	}
	state, err := h.Run(ctx, "systemctl", "is-system-running")
	if state = strings.TrimSpace(state); state == "" && err != nil {
		return err
	}
	fmt.Fprintf(stdout, "name:    %s\nid:      %s\npid:     %d\nstate:   %s\nbus:     %s\ncgroup:  %s\nconsole: %s\n",
		h.Name(), h.ID(), h.PID(), state, h.SystemBusAddress(), h.CgroupDir(), h.ConsoleLog())
	return nil
}

func down(path string) error {
	h, err := testbed.Attach(path)
	if err != nil && !errors.Is(err, testbed.ErrHostGone) {
		return err
	}
	// A host that is gone may still have left its cgroup and work directory.
	if err := h.Stop(); err != nil {
		return err
	}
	return os.Remove(path)
}
