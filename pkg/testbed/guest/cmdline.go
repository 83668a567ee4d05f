package guest

import (
	"strconv"
	"strings"
	"time"
)

// Serial console lines the guest prints.
const (
	ReadyPrefix     = "TESTGUEST READY"           // then " host=<h> ip=<cidr|none>"
	PowerButtonLine = "TESTGUEST: powerbutton"    // the ACPI power button was pressed
	PoweroffAfter   = "TESTGUEST: poweroff_after" // tg.poweroff_after ran out
)

// Options are the guest's settings, passed on the kernel command line.
type Options struct {
	IP      string // CIDR for eth0, e.g. 10.0.0.2/24; empty leaves eth0 down
	Gateway string // default route, with IP
	Host    string // hostname; default "testguest"
	// Listen starts a TCP listener per port that answers "OK <port>".
	Listen []int
	// PoweroffAfter powers the guest off by itself after this long,
	// rounded up to whole seconds; 0 never.
	PoweroffAfter time.Duration
	// Verbose keeps the kernel's boot messages on the console.
	Verbose bool
}

// Cmdline is the kernel command line for -append: the console on ttyS0, a
// panic that reboots at once (QEMU's pvpanic still reports it), and the
// tg.* settings the guest's init reads.
func (o Options) Cmdline() string {
	args := []string{"console=ttyS0", "panic=-1"}
	if !o.Verbose {
		args = append(args, "quiet")
	}
	add := func(k, v string) {
		if v != "" {
			args = append(args, "tg."+k+"="+v)
		}
	}
	add("ip", o.IP)
	add("gw", o.Gateway)
	add("host", o.Host)
	ports := make([]string, len(o.Listen))
	for i, p := range o.Listen {
		ports[i] = strconv.Itoa(p)
	}
	add("listen", strings.Join(ports, ","))
	if o.PoweroffAfter > 0 {
		add("poweroff_after", strconv.Itoa(int((o.PoweroffAfter+time.Second-1)/time.Second)))
	}
	return strings.Join(args, " ")
}

// ReadyLine is the line the guest prints when it is up with these options.
func (o Options) ReadyLine() string {
	host, ip := o.Host, o.IP
	if host == "" {
		host = "testguest"
	}
	if ip == "" {
		ip = "none"
	}
	return ReadyPrefix + " host=" + host + " ip=" + ip
}
