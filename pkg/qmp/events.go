package qmp

import (
	"encoding/json"
	"fmt"
	"sync"
	"time"
)

// Names of the events the shim reacts to.
const (
	EventShutdown      = "SHUTDOWN"
	EventPowerdown     = "POWERDOWN"
	EventReset         = "RESET"
	EventStop          = "STOP"
	EventResume        = "RESUME"
	EventSuspend       = "SUSPEND"
	EventWakeup        = "WAKEUP"
	EventGuestPanicked = "GUEST_PANICKED"
	EventWatchdog      = "WATCHDOG"
	EventBlockIOError  = "BLOCK_IO_ERROR"
	// EventDeviceTrayMoved is a CD-ROM tray opening or closing, by the
	// guest or by a medium change.
	EventDeviceTrayMoved = "DEVICE_TRAY_MOVED"
)

// Event is one asynchronous QMP event.
type Event struct {
	Name string
	Data json.RawMessage // nil when the event carries no data
	Time time.Time       // QEMU's timestamp; zero if QEMU sent none or a bad one
}

// DecodeData decodes the event's data into v.
func (e Event) DecodeData(v any) error {
	if e.Data == nil {
		return fmt.Errorf("qmp: event %s carries no data", e.Name)
	}
	if err := json.Unmarshal(e.Data, v); err != nil {
		return fmt.Errorf("qmp: event %s: %w", e.Name, err)
	}
	return nil
}

// ShutdownData is the data of SHUTDOWN (and of RESET, which has the same
// shape). Reason is QEMU's ShutdownCause, for example "guest-shutdown",
// "host-qmp-quit", "host-signal" or "guest-panic".
type ShutdownData struct {
	Guest  bool   `json:"guest"` // true when the guest itself asked
	Reason string `json:"reason"`
}

// Shutdown decodes the data of a SHUTDOWN or RESET event.
func (e Event) Shutdown() (ShutdownData, error) {
	var d ShutdownData
	if e.Name != EventShutdown && e.Name != EventReset {
		return d, fmt.Errorf("qmp: event %s is not %s", e.Name, EventShutdown)
	}
	err := e.DecodeData(&d)
	return d, err
}

type timestamp struct {
	Seconds      int64 `json:"seconds"`
	Microseconds int64 `json:"microseconds"`
}

func (t *timestamp) time() time.Time {
	// QEMU sends -1/-1 when it could not read the clock.
	if t == nil || t.Seconds < 0 || t.Microseconds < 0 || t.Microseconds >= 1e6 {
		return time.Time{}
	}
	return time.Unix(t.Seconds, t.Microseconds*1e3)
}

type subscriber struct {
	ch chan Event
}

// Subscribe returns a channel that receives every event from now on, and a
// function that ends the subscription and closes the channel. The channel
// holds up to buffer events (at least 1); while it is full, new events are
// dropped for this subscriber and counted in DroppedEvents. The channel is
// also closed when the client ends, after the events already in it.
// Events are not kept for later subscribers: subscribe right after New, before
// the first command that can cause one (such as cont).
func (c *Client) Subscribe(buffer int) (<-chan Event, func()) {
	s := &subscriber{ch: make(chan Event, max(buffer, 1))}
	c.mu.Lock()
	if c.err != nil {
		c.mu.Unlock()
		close(s.ch)
		return s.ch, func() {}
	}
	c.subs[s] = struct{}{}
	c.mu.Unlock()

	var once sync.Once
	return s.ch, func() {
		once.Do(func() {
			c.mu.Lock()
			defer c.mu.Unlock()
			if _, ok := c.subs[s]; ok { // not yet closed by terminate
				delete(c.subs, s)
				close(s.ch)
			}
		})
	}
}

// DroppedEvents counts events not delivered because a subscriber's channel
// was full, summed over all subscribers.
func (c *Client) DroppedEvents() uint64 { return c.dropped.Load() }

// publish hands ev to every subscriber without ever blocking the reader.
func (c *Client) publish(ev Event) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for s := range c.subs {
		select {
		case s.ch <- ev:
		default:
			c.dropped.Add(1)
		}
	}
}
