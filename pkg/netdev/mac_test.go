package netdev

import (
	"fmt"
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

func TestTapName(t *testing.T) {
	const id = "0F8FAD5B-D9CB-469F-A165-70867728950E"
	for nic, want := range map[string]string{
		"net0":  "ivt0f8fad5bd9cb", // the name a VM had before it could have several NICs
		"net1":  "iv0f8fad5bd9.1",
		"net99": "iv0f8fad5bd9.99",
	} {
		if got := TapName(id, nic); got != want {
			t.Errorf("TapName(%s) = %q, want %q", nic, got, want)
		}
	}
	// Names of other forms hash, and still fit.
	for _, nic := range []string{"net100", "net01", "wan", "net-1", "net+1", ""} {
		got := TapName(id, nic)
		if len(got) != 15 || !strings.HasPrefix(got, "iv0f8fad5bd9_") {
			t.Errorf("TapName(%q) = %q", nic, got)
		}
	}
}

func TestTapNamesDifferAndFitIFNAMSIZ(t *testing.T) {
	// UUIDs that differ in their 10th hex digit: every NIC of both VMs has
	// a TAP of its own.
	seen := map[string]string{}
	for _, id := range []string{"0f8fad5b-d9cb-469f-a165-70867728950e", "0f8fad5b-d8cb-469f-a165-70867728950e"} {
		for n := 0; n < 100; n++ {
			nic := fmt.Sprintf("net%d", n)
			name := TapName(id, nic)
			if len(name) > 15 || strings.ContainsAny(name, "/: ") {
				t.Fatalf("TapName(%s, %s) = %q is no interface name", id, nic, name)
			}
			key := id + " " + nic
			if other, dup := seen[name]; dup {
				t.Fatalf("%s is the TAP of both %s and %s", name, other, key)
			}
			seen[name] = key
		}
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
