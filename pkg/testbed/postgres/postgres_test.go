package postgres

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

func query(t *testing.T, dsn, sql string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return "", err
	}
	defer conn.Close(context.Background())
	var s string
	err = conn.QueryRow(ctx, sql).Scan(&s)
	return s, err
}

func TestClusterLifecycle(t *testing.T) {
	c := New(t)

	got, err := query(t, c.DSN(), "select current_user || '@' || current_database()")
	if err != nil {
		t.Fatalf("query: %v", err)
	}
	if want := c.User() + "@" + c.Database(); got != want {
		t.Errorf("connected as %q, want %q", got, want)
	}
	for name, want := range map[string]string{"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off", "listen_addresses": ""} {
		if got, err := query(t, c.DSN(), "select current_setting('"+name+"')"); err != nil || got != want {
			t.Errorf("%s = %q (%v), want %q", name, got, err, want)
		}
	}

	fi, err := os.Stat(c.SocketDir())
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o755 {
		t.Errorf("socket dir mode %v, want 0755", fi.Mode().Perm())
	}
	if !strings.HasPrefix(c.SocketDir(), "/var/tmp/") {
		t.Errorf("socket dir %s is not under /var/tmp", c.SocketDir())
	}
	if st := fi.Sys().(*syscall.Stat_t); st.Uid != c.cred.Uid {
		t.Errorf("socket dir owned by uid %d, want the server's uid %d", st.Uid, c.cred.Uid)
	}

	if err := c.StopServer(); err != nil {
		t.Fatalf("StopServer: %v", err)
	}
	if _, err := query(t, c.DSN(), "select 'up'"); err == nil {
		t.Fatal("query succeeded with the server stopped")
	}
	if err := c.StartServer(); err != nil {
		t.Fatalf("StartServer: %v", err)
	}
	if got, err := query(t, c.DSN(), "select 'up'"); err != nil || got != "up" {
		t.Fatalf("after StartServer: %q, %v", got, err)
	}

	pidBefore := c.serverPID()
	if err := c.Restart(); err != nil {
		t.Fatalf("Restart: %v", err)
	}
	if pidAfter := c.serverPID(); pidAfter == 0 || pidAfter == pidBefore {
		t.Errorf("postmaster PID %d before restart, %d after: want a new server", pidBefore, pidAfter)
	}
	if _, err := query(t, c.DSN(), "select 'up'"); err != nil {
		t.Fatalf("after Restart: %v", err)
	}

	if err := c.Stop(); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if _, err := os.Stat(c.SocketDir()); !os.IsNotExist(err) {
		t.Errorf("cluster dir still there after Stop: %v", err)
	}
	if err := c.Stop(); err != nil {
		t.Errorf("second Stop: %v", err)
	}
}

// A process in another mount namespace that bind-mounts the socket directory,
// and that is not root, must still reach the server.
func TestSocketReachableFromOtherNamespaceAndUser(t *testing.T) {
	c := New(t)
	for _, tool := range []string{"unshare", "setpriv"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s (util-linux) not installed", tool)
		}
	}
	nobody, err := lookupCredential("nobody")
	if err != nil {
		t.Skipf("no unprivileged user to test with: %v", err)
	}
	target, err := os.MkdirTemp("/var/tmp", "ivpg-bind-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := os.Remove(target); err != nil {
			t.Error(err)
		}
	})

	// Mount as root in a private mount namespace, then drop to nobody with setpriv.
	script := `mount --bind "$1" "$2" && exec setpriv --reuid="$6" --regid="$7" --clear-groups "$3" -h "$2" -U "$4" -d "$5" -Atc "select 'reached'"`
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "unshare", "--mount", "--propagation", "private",
		"sh", "-c", script, "sh", c.SocketDir(), target, filepath.Join(c.binDir, "psql"), c.User(), c.Database(),
		strconv.FormatUint(uint64(nobody.Uid), 10), strconv.FormatUint(uint64(nobody.Gid), 10))
	// nobody may not be able to enter the checkout's directory (a clone in
	// a 0700 temp dir): psql would warn about its working directory.
	cmd.Dir = "/"
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("psql through a bind mount as nobody: %v: %s", err, out)
	}
	if got := strings.TrimSpace(string(out)); got != "reached" {
		t.Fatalf("psql printed %q, want %q", got, "reached")
	}
}

func TestTwoClustersAtOnce(t *testing.T) {
	a, b := New(t), New(t)
	if a.SocketDir() == b.SocketDir() {
		t.Fatal("two clusters share a socket directory")
	}
	for _, c := range []*Cluster{a, b} {
		if _, err := query(t, c.DSN(), "select 'x'"); err != nil {
			t.Errorf("cluster %s: %v", c.SocketDir(), err)
		}
	}
}

func TestCreateDatabase(t *testing.T) {
	c := New(t)
	dsn, err := c.CreateDatabase(context.Background(), "second")
	if err != nil {
		t.Fatal(err)
	}
	if got, err := query(t, dsn, "select current_database()"); err != nil || got != "second" {
		t.Fatalf("connected to %q (%v), want database second", got, err)
	}
	if _, err := c.CreateDatabase(context.Background(), "second"); err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Errorf("creating a database twice: %v, want an error saying it exists", err)
	}
}

func TestStartFailureCarriesServerLog(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root, to run the server as the postgres user")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, err := Start(ctx, Options{Settings: map[string]string{"shared_buffers": "not-a-size"}})
	if err == nil {
		t.Fatal("Start succeeded with an invalid setting")
	}
	t.Logf("error: %v", err)
	if !strings.Contains(err.Error(), "shared_buffers") {
		t.Errorf("error does not name the bad setting: %v", err)
	}
}

func TestFindBinDir(t *testing.T) {
	dir, err := FindBinDir(context.Background())
	if err != nil {
		t.Skip(err.Error())
	}
	if !hasServerBinaries(dir) {
		t.Fatalf("FindBinDir returned %s without initdb/pg_ctl/postgres", dir)
	}
}

func TestSortVersionsDesc(t *testing.T) {
	got := sortVersionsDesc([]string{"9.6", "15", "lost+found", "10", "16", "9.5", "015", "7."})
	want := []string{"16", "15", "10", "9.6", "9.5"}
	if !slices.Equal(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
}

func FuzzParseVersion(f *testing.F) {
	for _, s := range []string{"15", "9.6", "", ".", "1.2.3", "-1", "0015", "１５"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		major, minor, ok := parseVersion(s)
		if !ok {
			return
		}
		if major < 0 || minor < 0 {
			t.Fatalf("%q: negative version %d.%d", s, major, minor)
		}
		// Only canonical spellings are accepted, so printing them back gives the input.
		back := strconv.Itoa(major)
		if strings.Contains(s, ".") {
			back += "." + strconv.Itoa(minor)
		}
		if back != s {
			t.Fatalf("%q parsed as %d.%d, which prints as %q", s, major, minor, back)
		}
	})
}

// A test binary killed by its timeout runs no cleanup; the next Start stops
// the cluster it left, and leaves alone the clusters of live processes.
func TestStartStopsOrphanedClusters(t *testing.T) {
	base, err := os.MkdirTemp("/var/tmp", "ivpgorphans-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := os.RemoveAll(base); err != nil {
			t.Errorf("left %s behind: %v", base, err)
		}
	})
	if err := os.Chmod(base, 0o755); err != nil {
		t.Fatal(err)
	}
	opts := Options{BaseDir: base}
	orphan := NewWithOptions(t, opts)
	live := NewWithOptions(t, opts)
	pid := orphan.serverPID()
	if pid == 0 {
		t.Fatal("orphan's server is not running")
	}

	// Pretend the orphan's maker was a process that has exited.
	dead := exec.Command("true")
	if err := dead.Start(); err != nil {
		t.Fatal(err)
	}
	start, err := processStart(dead.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	if err := dead.Wait(); err != nil {
		t.Fatal(err)
	}
	gone := owner{pid: dead.Process.Pid, start: start}
	if gone.alive() {
		t.Fatal("an exited process counts as alive")
	}
	if err := os.WriteFile(filepath.Join(orphan.SocketDir(), ownerFile), []byte(gone.String()), 0o644); err != nil {
		t.Fatal(err)
	}

	NewWithOptions(t, opts)
	if _, err := os.Stat(orphan.SocketDir()); !os.IsNotExist(err) {
		t.Errorf("orphaned cluster's directory is still there (%v)", err)
	}
	if !waitGone(pid, 10*time.Second) {
		t.Errorf("orphaned postmaster %d still runs", pid)
	}
	if _, err := query(t, live.DSN(), "select 'x'"); err != nil {
		t.Errorf("a live process's cluster was touched: %v", err)
	}
}

func TestParseOwner(t *testing.T) {
	if o, ok := parseOwner([]byte("123 456\n")); !ok || o.pid != 123 || o.start != "456" {
		t.Errorf("parseOwner = %+v %v", o, ok)
	}
	for _, bad := range []string{"", "123", "x 4", "-1 4", "123 "} {
		if _, ok := parseOwner([]byte(bad)); ok {
			t.Errorf("parseOwner(%q) accepted", bad)
		}
	}
}
