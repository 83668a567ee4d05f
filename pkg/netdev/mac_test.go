package netdev

import (
	"strings"
	"testing"
)

func TestGenerateMACIsValidAndPrefixed(t *testing.T) {
	seen := map[string]bool{}
	for i := 0; i < 100; i++ {
		m := GenerateMAC().String()
		if !strings.HasPrefix(m, "52:54:00:") {
			t.Fatalf("%s lacks the QEMU prefix", m)
		}
		if _, err := ParseMAC(m); err != nil {
			t.Fatalf("generated %s is invalid: %v", m, err)
		}
		seen[m] = true
	}
	if len(seen) < 95 {
		t.Fatalf("only %d distinct MACs in 100", len(seen))
	}
}

func TestParseMAC(t *testing.T) {
	for _, ok := range []string{"52:54:00:12:34:56", "02:00:00:00:00:01", "AA:BB:CC:DD:EE:FE"} {
		if _, err := ParseMAC(ok); err != nil {
			t.Errorf("%s: %v", ok, err)
		}
	}
	for _, bad := range []string{"", "52:54:00:12:34", "01:00:5e:00:00:01", "00:00:00:00:00:00",
		"52-54-00-12-34-56", "5254.0012.3456", "zz:54:00:12:34:56", "52:54:00:12:34:56:78"} {
		if _, err := ParseMAC(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestTapNameFitsIFNAMSIZ(t *testing.T) {
	n := TapName("0F8FAD5B-D9CB-469F-A165-70867728950E")
	if n != "ivt0f8fad5bd9cb" || len(n) > 15 {
		t.Fatalf("TapName = %q", n)
	}
}

func FuzzParseMAC(f *testing.F) {
	f.Add("52:54:00:12:34:56")
	f.Add("ff:ff:ff:ff:ff:ff")
	f.Fuzz(func(t *testing.T, s string) {
		mac, err := ParseMAC(s)
		if err != nil {
			return
		}
		if len(mac) != 6 || mac[0]&1 == 1 {
			t.Fatalf("ParseMAC(%q) = %v accepted a non-unicast or short address", s, mac)
		}
	})
}
