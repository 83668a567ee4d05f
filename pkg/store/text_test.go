package store

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func FuzzCleanText(f *testing.F) {
	for _, s := range []string{"", "plain", "nul\x00byte", "bad\xffutf8", "é", strings.Repeat("ü", 40), "\xc3"} {
		f.Add(s, 16)
	}
	f.Fuzz(func(t *testing.T, s string, max int) {
		if max < 0 || max > 1<<16 {
			return
		}
		got := cleanText(s, max)
		if !utf8.ValidString(got) {
			t.Fatalf("cleanText(%q, %d) = %q: invalid UTF-8", s, max, got)
		}
		if strings.IndexByte(got, 0) >= 0 {
			t.Fatalf("cleanText(%q, %d) = %q: has NUL", s, max, got)
		}
		if len(got) > max {
			t.Fatalf("cleanText(%q, %d) = %q: %d bytes", s, max, got, len(got))
		}
		if again := cleanText(got, max); again != got {
			t.Fatalf("not idempotent: %q then %q", got, again)
		}
		if utf8.ValidString(s) && !strings.Contains(s, "\x00") && len(s) <= max && got != s {
			t.Fatalf("changed storable text %q to %q", s, got)
		}
	})
}
