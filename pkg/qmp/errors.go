package qmp

import (
	"errors"
	"fmt"
)

// Error is an error reply from QEMU: {"error": {"class": ..., "desc": ...}}.
// Match it with errors.As; Class is QEMU's error class, for example
// "CommandNotFound", "GenericError" or "DeviceNotFound".
type Error struct {
	Command string `json:"-"` // the command that failed, for context
	Class   string `json:"class"`
	Desc    string `json:"desc"`
}

func (e *Error) Error() string {
	return fmt.Sprintf("qmp %s: %s: %s", e.Command, e.Class, e.Desc)
}

var (
	// ErrDisconnected is wrapped by every error caused by the end of the
	// connection (QEMU exited, the socket broke, or the stream was garbled).
	ErrDisconnected = errors.New("QMP connection lost")
	// ErrClosed is the reason after Close was called.
	ErrClosed = errors.New("QMP client closed")
	// ErrProtocol marks input that does not follow QMP: a missing greeting,
	// bytes that are not JSON, a reply of the wrong shape.
	ErrProtocol = errors.New("QMP protocol violation")
	// ErrNoFDPassing means the connection cannot carry file descriptors
	// (it is not a Unix socket).
	ErrNoFDPassing = errors.New("QMP connection cannot pass file descriptors")
)
