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
	f.Fuzz(func(t *testing.T, s string, limit int) {
		if limit < 0 || limit > 1<<16 {
			return
		}
		got := cleanText(s, limit)
		if !utf8.ValidString(got) {
			t.Fatalf("cleanText(%q, %d) = %q: invalid UTF-8", s, limit, got)
		}
		if strings.IndexByte(got, 0) >= 0 {
			t.Fatalf("cleanText(%q, %d) = %q: has NUL", s, limit, got)
		}
		if len(got) > limit {
			t.Fatalf("cleanText(%q, %d) = %q: %d bytes", s, limit, got, len(got))
		}
		if again := cleanText(got, limit); again != got {
			t.Fatalf("not idempotent: %q then %q", got, again)
		}
		if utf8.ValidString(s) && !strings.Contains(s, "\x00") && len(s) <= limit && got != s {
			t.Fatalf("changed storable text %q to %q", s, got)
		}
	})
}
