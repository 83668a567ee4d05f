package vmspec

import (
	"slices"
	"strings"

	"github.com/infinibay/infinivirt/pkg/errdefs"
)

// A VM's platform and sound card are fixed at create, from its OS, and kept
// in its spec like its devices: an upgrade that learns new defaults never
// changes the hardware of a guest already installed.

// PlatformWindows is the platform Windows expects of a hypervisor: the
// Hyper-V enlightenments, the RTC in local time and no HPET. The empty
// platform is a plain PC.
const PlatformWindows = "windows"

// DesktopOSes get a sound card unless the create says audio: false. The
// plain "linux" is for servers and minimal guests too, so it gets one only
// when asked.
var DesktopOSes = []string{"windows10", "windows11", "ubuntu", "fedora"}

// IsWindows reports whether os is a Windows version.
func IsWindows(os string) bool { return strings.HasPrefix(os, "windows") }

// DefaultPlatform is the platform a VM of os is created with.
func DefaultPlatform(os string) string {
	if IsWindows(os) {
		return PlatformWindows
	}
	return ""
}

// DefaultAudio reports whether a VM of os is created with a sound card
// when the create does not say.
func DefaultAudio(os string) bool { return slices.Contains(DesktopOSes, os) }

func checkPlatform(p string) error {
	if p != "" && p != PlatformWindows {
		return errdefs.Invalid("platform", "must be empty or %q, got %q", PlatformWindows, p)
	}
	return nil
}
