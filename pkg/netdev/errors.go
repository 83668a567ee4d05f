package netdev

import (
	"errors"
	"fmt"
	"strings"

	"github.com/infinibay/infinivirt/pkg/errdefs"
)

// Sentinels for errors.Is. The errors returned carry them inside a
// *LinkError, which names the link.
var (
	ErrBridgeNotFound = errors.New("bridge not found")
	ErrNotBridge      = errors.New("link is not a bridge")
	ErrBridgeBusy     = errors.New("bridge has ports attached")
	ErrNotTAP         = errors.New("link is not a TAP")
	ErrLinkExists     = errors.New("link already exists")
)

// LinkError is a refusal about one named link: it is missing, of the wrong
// kind, busy or already there. It matches its sentinel with errors.Is, and
// the API error class with errors.As or api.AsError.
type LinkError struct {
	Link  string   // the link the caller named
	Kind  string   // the kind of link found, when it is the wrong one
	Ports []string // the ports still attached, for ErrBridgeBusy
	Err   error    // one of the sentinels above
}

func (e *LinkError) Error() string {
	switch {
	case errors.Is(e.Err, ErrBridgeNotFound):
		return fmt.Sprintf("netdev: bridge %q does not exist", e.Link)
	case errors.Is(e.Err, ErrNotBridge):
		return fmt.Sprintf("netdev: %q exists but is a %s link, not a bridge", e.Link, e.Kind)
	case errors.Is(e.Err, ErrBridgeBusy):
		return fmt.Sprintf("netdev: bridge %q still has ports attached: %s", e.Link, strings.Join(e.Ports, ", "))
	case errors.Is(e.Err, ErrNotTAP):
		return fmt.Sprintf("netdev: %q is a %s link, not a TAP", e.Link, e.Kind)
	case errors.Is(e.Err, ErrLinkExists):
		return fmt.Sprintf("netdev: a %s link named %q already exists", e.Kind, e.Link)
	}
	return fmt.Sprintf("netdev: %s: %v", e.Link, e.Err)
}

// Unwrap exposes the sentinel and the API class, so callers can test either.
func (e *LinkError) Unwrap() []error {
	return []error{e.Err, &errdefs.Error{Code: e.code(), Message: e.Error()}}
}

func (e *LinkError) code() errdefs.Code {
	switch {
	case errors.Is(e.Err, ErrBridgeNotFound):
		return errdefs.CodeNotFound
	case errors.Is(e.Err, ErrLinkExists):
		return errdefs.CodeAlreadyExists
	case errors.Is(e.Err, ErrNotBridge), errors.Is(e.Err, ErrBridgeBusy), errors.Is(e.Err, ErrNotTAP):
		return errdefs.CodeFailedPrecondition
	}
	return errdefs.CodeInternal
}

// OpError is a failed kernel operation: which step, on which link, and the
// kernel's or the context's error.
type OpError struct {
	Op   string // for example "attach to bridge br0"
	Link string
	Err  error
}

func (e *OpError) Error() string {
	return fmt.Sprintf("netdev: %s: %s: %v", e.Link, e.Op, e.Err)
}

func (e *OpError) Unwrap() error { return e.Err }
