package sha512crypt

import (
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// Vectors from the specification's test suite.
var vectors = []struct{ setting, key, want string }{
	{"$6$saltstring", "Hello world!",
		"$6$saltstring$svn8UoSVapNtMuq1ukKS4tPQd8iKwSMHWjl/O817G3uBnIFNjnQJuesI68u4OTLiBFdcbYEdFCoEOfaS35inz1"},
	{"$6$rounds=10000$saltstringsaltstring", "Hello world!",
		"$6$rounds=10000$saltstringsaltst$OW1/O6BYHV6BcXZu8QVeXbDWra3Oeqh0sbHbbMCVNSnCM/UrjmM0Dp8vOuZeHBy/YTBmSK6H9qs/y3RnOaw5v."},
	{"$6$rounds=5000$toolongsaltstring", "This is just a test",
		"$6$rounds=5000$toolongsaltstrin$lQ8jolhgVRVhY4b5pZKaysCLi0QBxGoNeKQzQ3glMhwllF7oGDZxUhx1yxdYcz/e1JSbq3y6JMxxl8audkUEm0"},
	{"$6$rounds=1400$anotherlongsaltstring", "a very much longer text to encrypt.  This one even stretches over morethan one line.",
		"$6$rounds=1400$anotherlongsalts$POfYwTEok97VWcjxIiSOjiykti.o/pQs.wPvMxQ6Fm7I6IoYN3CmLs66x9t0oSwbtEW7o7UmJEiDwGqd8p4ur1"},
	{"$6$rounds=77777$short", "we have a short salt string but not a short password",
		"$6$rounds=77777$short$WuQyW2YR.hBNpjjRhpYD/ifIw05xdfeEyQoMxIXbkvr0gge1a1x3yRULJ5CCaUeOxFmtlcGZelFl5CxtgfiAc0"},
	{"$6$rounds=123456$asaltof16chars..", "a short string",
		"$6$rounds=123456$asaltof16chars..$BtCwjqMJGx5hrJhZywWvt0RLE8uZ4oPwcelCjmw2kSYu.Ec6ycULevoBK25fs2xXgMNrCzIMVcgEJAstJeonj1"},
	{"$6$rounds=10$roundstoolow", "the minimum number is still observed",
		"$6$rounds=1000$roundstoolow$kUMsbe306n21p9R.FRkW3IGn.S9NPN0x50YhH1xhLsPuWGsUSklZt58jaTfF4ZEQpyUNGc0dqbpBYYBaHHrsX."},
}

func TestSpecVectors(t *testing.T) {
	for _, v := range vectors {
		if got := Crypt(v.key, v.setting); got != v.want {
			t.Errorf("Crypt(%q, %q)\n got %s\nwant %s", v.key, v.setting, got, v.want)
		}
		if ok, err := Verify(v.key, v.want); !ok || err != nil {
			t.Errorf("Verify(%q, %s) = %v, %v", v.key, v.want, ok, err)
		}
		if ok, _ := Verify(v.key+"x", v.want); ok {
			t.Errorf("Verify accepted a wrong password for %s", v.want)
		}
	}
}

func TestVerifyMalformed(t *testing.T) {
	for _, h := range []string{"", "$5$abc$def", "$6$nodigest", "plain"} {
		if _, err := Verify("x", h); err == nil {
			t.Errorf("Verify(%q) accepted a malformed hash", h)
		}
	}
}

// TestAgainstOpenSSL compares with an independent implementation on this
// machine: `openssl passwd -6`.
func TestAgainstOpenSSL(t *testing.T) {
	openssl, err := exec.LookPath("openssl")
	if err != nil {
		t.Skip("openssl is not installed")
	}
	// openssl prints <NULL> for an empty password; glibc covers that case below.
	passwords := []string{"s3cret", "a", "pässwörd with spaces & <xml> 'quotes' \"dq\"", strings.Repeat("long", 40), "\t$6$tricky$"}
	salts := []string{"abc", "saltstring", "./0123456789ABCD", "z"}
	for _, pw := range passwords {
		for _, salt := range salts {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			out, err := exec.CommandContext(ctx, openssl, "passwd", "-6", "-salt", salt, pw).Output()
			cancel()
			if err != nil {
				t.Fatalf("openssl passwd: %v", err)
			}
			want := strings.TrimSpace(string(out))
			if got := Crypt(pw, "$6$"+salt); got != want {
				t.Errorf("password %q salt %q:\n got %s\nwant %s", pw, salt, got, want)
			}
		}
	}
}

// TestAgainstGlibc compares with glibc's crypt(3) through Debian's python3.
func TestAgainstGlibc(t *testing.T) {
	const py = "/usr/bin/python3"
	script := `import sys, warnings
warnings.simplefilter("ignore")
import crypt
for line in sys.stdin.read().split("\x00")[:-1]:
    pw, setting = line.split("\x01")
    print(crypt.crypt(pw, setting))`
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := exec.CommandContext(ctx, py, "-W", "ignore", "-c", "import crypt").Run(); err != nil {
		t.Skipf("%s has no crypt module: %v", py, err)
	}
	cases := [][2]string{
		{"s3cret", "$6$abc"}, {"", "$6$saltstring"}, {"ünïcødé 🙂", "$6$rounds=1000$xyz"},
		{strings.Repeat("x", 300), "$6$rounds=2000$0123456789abcdefEXTRA"},
		// Not compared: rounds below 1000, which libxcrypt refuses ("*0") while
		// the specification clamps them (see the rounds=10 vector above).
	}
	var in strings.Builder
	for _, c := range cases {
		in.WriteString(c[0] + "\x01" + c[1] + "\x00")
	}
	cmd := exec.CommandContext(ctx, py, "-c", script)
	cmd.Stdin = strings.NewReader(in.String())
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("python3 crypt: %v", err)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) != len(cases) {
		t.Fatalf("python3 printed %d lines for %d cases: %q", len(lines), len(cases), out)
	}
	for i, c := range cases {
		if got := Crypt(c[0], c[1]); got != lines[i] {
			t.Errorf("Crypt(%q, %q)\n got %s\nwant %s (glibc)", c[0], c[1], got, lines[i])
		}
	}
}

func TestHashIsRandomAndVerifies(t *testing.T) {
	a, err := Hash("pw")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := Hash("pw")
	if a == b {
		t.Error("two hashes of one password are equal: salt is not random")
	}
	if !strings.HasPrefix(a, "$6$") || len(strings.Split(a, "$")[2]) != MaxSaltLen {
		t.Errorf("hash %s: want $6$ and a 16-character salt", a)
	}
	if ok, _ := Verify("pw", a); !ok {
		t.Error("hash does not verify")
	}
}

func BenchmarkHash(b *testing.B) {
	for b.Loop() {
		Crypt("correct horse battery staple", "$6$saltstring")
	}
}
