package testbed

import (
	"fmt"
	"path"
	"strings"
)

// maskedUnits make no sense in a namespaced host or would touch state that
// is shared with the machine (kernel modules, sysctls, binfmt, audit, the
// clock, AppArmor). Masking is a /dev/null symlink in /etc/systemd/system.
var maskedUnits = []string{
	"apparmor.service",
	"cryptsetup.target",
	"dev-hugepages.mount",
	"integritysetup.target",
	"kmod-static-nodes.service",
	"proc-sys-fs-binfmt_misc.automount",
	"proc-sys-fs-binfmt_misc.mount",
	"sys-fs-fuse-connections.mount",
	"sys-kernel-config.mount",
	"sys-kernel-debug.mount",
	"sys-kernel-tracing.mount",
	"systemd-ask-password-console.path",
	"systemd-binfmt.service",
	"systemd-firstboot.service",
	"systemd-fsck-root.service",
	"systemd-hwdb-update.service",
	"systemd-journald-audit.socket",
	"systemd-machine-id-commit.service",
	"systemd-modules-load.service",
	"systemd-pcrphase-sysinit.service",
	"systemd-pcrphase.service",
	"systemd-pstore.service",
	"systemd-random-seed.service",
	"systemd-remount-fs.service",
	"systemd-repart.service",
	"systemd-sysctl.service",
	"systemd-sysusers.service",
	"systemd-timesyncd.service",
	"systemd-udev-settle.service",
	"systemd-udev-trigger.service",
	"systemd-udevd-control.socket",
	"systemd-udevd-kernel.socket",
	"systemd-udevd.service",
	"timers.target",
	"veritysetup.target",
}

// devices are the character devices the host's /dev gets (a fresh tmpfs,
// never the machine's devtmpfs). Missing ones are skipped.
var devices = []string{"null", "zero", "full", "random", "urandom", "tty", "kvm", "net/tun"}

// setupPlan is everything the setup script needs. It is rendered to a POSIX
// shell script that runs as PID 1 of the new namespaces and ends by exec'ing
// systemd on the overlay root.
type setupPlan struct {
	workDir   string // host-side directory; the tmpfs is mounted on workDir/fs inside the namespace
	hostname  string
	machineID string
	files     []stagedFile
	binds     []Bind
	systemd   string // path of the systemd binary
}

// stagedFile is a File whose content is either staged in workDir or read
// from a host path when the script runs.
type stagedFile struct {
	target string // absolute path inside the host
	source string // host path to copy from
	mode   uint32
}

// shellQuote quotes s for POSIX sh so that no character in it is special.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// script renders the setup script.
func (p setupPlan) script() string {
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	q := shellQuote
	fs := p.workDir + "/fs"
	w("set -eu")
	w("umask 022")
	// Everything below is mounted inside the private mount namespace only,
	// so it disappears with the namespace.
	w("mount -t tmpfs -o mode=0755 infinivirt-testbed %s", q(fs))
	w("mkdir %s %s %s", q(fs+"/upper"), q(fs+"/work"), q(fs+"/root"))
	w("mount -t overlay -o lowerdir=/,upperdir=%s,workdir=%s infinivirt-testbed %s", q(fs+"/upper"), q(fs+"/work"), q(fs+"/root"))
	w("R=%s", q(fs+"/root"))
	w(`mount -t proc proc "$R/proc"`)
	w(`mount -t sysfs sysfs "$R/sys"`)
	// The namespace's own cgroup2 subtree: the cgroup namespace makes the
	// host's directory appear as the root.
	w(`mount -t cgroup2 cgroup2 "$R/sys/fs/cgroup"`)
	w(`mount -t tmpfs -o mode=0755,nosuid dev "$R/dev"`)
	w(`mkdir -p "$R/dev/pts" "$R/dev/shm" "$R/dev/net"`)
	for _, d := range devices {
		w(`if [ -c /dev/%s ]; then cp -a /dev/%s "$R/dev/%s"; fi`, d, d, d)
	}
	w(`mount -t devpts -o newinstance,ptmxmode=0666,mode=0620 devpts "$R/dev/pts"`)
	w(`ln -s pts/ptmx "$R/dev/ptmx"`)
	w(`ln -s /proc/self/fd "$R/dev/fd"`)
	w(`ln -s /proc/self/fd/0 "$R/dev/stdin"`)
	w(`ln -s /proc/self/fd/1 "$R/dev/stdout"`)
	w(`ln -s /proc/self/fd/2 "$R/dev/stderr"`)
	w(`mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs "$R/dev/shm"`)
	// /run and /tmp start empty, as on a freshly booted machine. /run is
	// mounted here rather than by systemd so that binds under it survive.
	w(`mount -t tmpfs -o mode=0755,nosuid,nodev tmpfs "$R/run"`)
	w(`mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs "$R/tmp"`)
	w(`printf '%%s\n' %s > "$R/etc/hostname"`, q(p.hostname))
	w(`printf '%%s\n' %s > "$R/etc/machine-id"`, q(p.machineID))
	// No fstab: the root is ours and nothing else is to be mounted.
	w(`: > "$R/etc/fstab"`)
	w(`mkdir -p "$R/etc/systemd/system" "$R/etc/tmpfiles.d"`)
	// Belt and braces: the overlay already keeps the machine's /tmp safe.
	w(`ln -sf /dev/null "$R/etc/tmpfiles.d/tmp.conf"`)
	for _, u := range maskedUnits {
		w(`ln -sf /dev/null "$R/etc/systemd/system/%s"`, u)
	}
	for _, f := range p.files {
		w(`install -D -m %04o %s "$R"%s`, f.mode&0o7777, q(f.source), q(f.target))
	}
	for _, bd := range p.binds {
		// A file is bound onto a file, a directory onto a directory.
		w(`if [ -d %s ]; then mkdir -p "$R"%s; else mkdir -p "$R"%s && touch "$R"%s; fi`,
			q(bd.Source), q(bd.Target), q(path.Dir(bd.Target)), q(bd.Target))
		w(`mount --rbind %s "$R"%s`, q(bd.Source), q(bd.Target))
	}
	// Swap roots and drop the machine's mount tree from this namespace.
	w(`cd "$R"`)
	w(`pivot_root . .`)
	w(`umount -l .`)
	w(`cd /`)
	w(`exec %s --unit=basic.target --show-status=no`, q(p.systemd))
	return b.String()
}
