package e2e

import (
	"context"
	"fmt"
	"math/rand/v2"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// guestRun runs a shell command on the guest's serial console, through the
// shim's control socket, and returns what it printed and its exit status.
// Markers with a fresh nonce tell the command's output from anything else.
//
//nolint:contextcheck // a command on the test bed gets its own deadline, apart from the test's context
func (b *bed) guestRun(t testing.TB, id, cmd string) (string, int) {
	t.Helper()
	nonce := strconv.FormatUint(rand.Uint64(), 36)
	line := fmt.Sprintf("printf '\\n__B%s__\\n'; %s; printf '\\n__E%s_%%d__\\n' $?\n", nonce, cmd, nonce)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := b.shim(id).ConsoleInput(ctx, []byte(line)); err != nil {
		t.Fatalf("console input: %v", err)
	}
	end := regexp.MustCompile(`__E` + nonce + `_(\d+)__`)
	var out string
	var rc int
	b.eventually(t, time.Minute, func() error {
		raw, err := b.shim(id).Console(ctx)
		if err != nil {
			return err
		}
		s := string(raw)
		m := end.FindStringSubmatchIndex(s)
		if m == nil {
			return fmt.Errorf("%q has not finished; console tail:\n%s", cmd, tail(s, 400))
		}
		rc, _ = strconv.Atoi(s[m[2]:m[3]])
		begin := strings.LastIndex(s[:m[0]], "__B"+nonce+"__")
		if begin < 0 {
			return fmt.Errorf("start marker of %q scrolled away", cmd)
		}
		out = strings.TrimSpace(s[begin+len("__B"+nonce+"__") : m[0]])
		return nil
	})
	return out, rc
}

// canPing reports whether the guest gets an answer from ip.
func (b *bed) canPing(t testing.TB, id, ip string) bool {
	_, rc := b.guestRun(t, id, "ping -c 1 -W 2 "+ip+" >/dev/null 2>&1")
	return rc == 0
}

// canConnect reports whether a TCP connection from the guest reaches a
// listener of the test guest (which answers "OK <port>").
func (b *bed) canConnect(t testing.TB, id, ip string, port int) bool {
	out, _ := b.guestRun(t, id, fmt.Sprintf("echo | nc -w 3 %s %d", ip, port))
	return strings.Contains(out, fmt.Sprintf("OK %d", port))
}
