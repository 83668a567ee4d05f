package device

import (
	"context"
	"fmt"
	"os"

	"golang.org/x/sys/unix"

	"github.com/infinibay/infinivirt/pkg/api"
	"github.com/infinibay/infinivirt/pkg/qemu"
	"github.com/infinibay/infinivirt/pkg/vmspec"
)

// Channel is a virtio-serial port: the guest opens it by its port name
// (the QEMU guest agent's is org.qemu.guest_agent.0), and the shim holds
// the other end of its socket.
type Channel struct {
	name string
	spec vmspec.Channel
	// Host is the shim's end of the socket, from Prepare until Release.
	Host *os.File
	qemu *os.File // QEMU's end, until QEMU inherited it
}

// Name is the channel's name, also its QEMU id.
func (c *Channel) Name() string { return c.name }

// Type is always api.DeviceChannel.
func (c *Channel) Type() api.DeviceType { return api.DeviceChannel }

// Port is the name the guest sees.
func (c *Channel) Port() string { return c.spec.Port }

// Caps says the port is there from boot (a hot-plugged one would need its
// chardev made over QMP from a passed fd), and it migrates, its socket's
// other end being the shim on each host.
func (c *Channel) Caps() Caps { return Caps{Migrate: true} }

// Prepare makes the socket pair: the shim's end is non-blocking, so Go's
// poller serves it.
func (c *Channel) Prepare(context.Context, *Host) error {
	if c.Host != nil {
		return nil
	}
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("channel %s: %w", c.name, err)
	}
	if err := unix.SetNonblock(fds[0], true); err != nil {
		unix.Close(fds[0])
		unix.Close(fds[1])
		return fmt.Errorf("channel %s: %w", c.name, err)
	}
	c.Host = os.NewFile(uintptr(fds[0]), c.name+"-shim")
	c.qemu = os.NewFile(uintptr(fds[1]), c.name+"-qemu")
	return nil
}

// Release closes both ends.
func (c *Channel) Release(context.Context) error {
	for _, f := range []**os.File{&c.Host, &c.qemu} {
		if *f != nil {
			(*f).Close()
			*f = nil
		}
	}
	return nil
}

// Configure adds the port, on QEMU's end of the socket pair when Prepare
// made one.
func (c *Channel) Configure(cfg *qemu.Config, fds *FDs) {
	ch := qemu.Channel{ID: c.name, Port: c.spec.Port}
	if c.qemu != nil {
		ch.FD = fds.Pass(c.qemu)
	}
	cfg.Channels = append(cfg.Channels, ch)
}

// Hotplug refuses: the port is there from boot (see Caps).
func (c *Channel) Hotplug(string) ([]Command, error) { return nil, notHotpluggable(api.DeviceChannel) }

// Unplug refuses, as Hotplug does.
func (c *Channel) Unplug() ([]Command, error) { return nil, notHotpluggable(api.DeviceChannel) }
