package shimapi

import (
	"encoding/json"
	"net/url"
	"reflect"
	"strconv"
	"time"

	"github.com/infinibay/infinivirt/pkg/api"
	"github.com/infinibay/infinivirt/pkg/errdefs"
)

// Route is one verb of the control socket: its method and path, and the Go
// types of what it takes and what it answers. The shim's server and
// pkg/shimclient are both built from these values, so they cannot disagree
// about a path or a body; a new verb is a Route here, its entry in Routes,
// and a handler in the shim.
//
// How a body travels follows from its type:
//   - a request of a GET travels in the query string, if its type has an
//     EncodeQuery method (and its pointer DecodeQuery); otherwise it is empty;
//   - a body whose type has RawBytes (and its pointer SetRawBytes) is those
//     bytes as they are: the console's text;
//   - an Empty answer is 204 with no body;
//   - anything else is JSON. A Stream route answers with Resp values, one
//     JSON document per line, until the shim ends the stream.
type Route[Req, Resp any] struct {
	Verb   string
	Method string // "GET" or "POST"
	Path   string
	Stream bool
}

// The control socket's verbs.
var (
	RouteStatus       = Route[StatusRequest, Status]{Verb: "status", Method: "GET", Path: "/v1/status"}
	RoutePower        = Route[PowerRequest, Status]{Verb: "power", Method: "POST", Path: "/v1/power"}
	RouteEvents       = Route[EventsRequest, api.Event]{Verb: "events", Method: "GET", Path: "/v1/events", Stream: true}
	RouteConsole      = Route[ConsoleRequest, ConsoleTail]{Verb: "console", Method: "GET", Path: "/v1/console"}
	RouteConsoleInput = Route[ConsoleInput, Empty]{Verb: "console-input", Method: "POST", Path: "/v1/console"}
	RouteBlock        = Route[BlockRequest, api.BlockDevices]{Verb: "query-block", Method: "GET", Path: "/v1/block"}
	RouteMedium       = Route[MediumRequest, Empty]{Verb: "change-medium", Method: "POST", Path: "/v1/medium"}
	RouteDisks        = Route[DisksRequest, api.Disks]{Verb: "query-disks", Method: "GET", Path: "/v1/disks"}
	RouteDiskAdd      = Route[DiskAddRequest, Empty]{Verb: "disk-add", Method: "POST", Path: "/v1/disks/add"}
	RouteDiskRemove   = Route[DiskRemoveRequest, Empty]{Verb: "disk-remove", Method: "POST", Path: "/v1/disks/remove"}
	RouteDiskResize   = Route[DiskResizeRequest, Empty]{Verb: "disk-resize", Method: "POST", Path: "/v1/disks/resize"}
	RouteSnapshot     = Route[SnapshotRequest, SnapshotResult]{Verb: "snapshot", Method: "POST", Path: "/v1/snapshot"}
	RouteBalloon      = Route[BalloonQuery, api.VMMemory]{Verb: "query-balloon", Method: "GET", Path: "/v1/balloon"}
	RouteBalloonSet   = Route[BalloonTarget, api.VMMemory]{Verb: "balloon", Method: "POST", Path: "/v1/balloon"}
	RouteUSB          = Route[USBRequest, USBState]{Verb: "query-usb", Method: "GET", Path: "/v1/usb"}
	RouteUSBAdd       = Route[USBAddRequest, Empty]{Verb: "usb-add", Method: "POST", Path: "/v1/usb/add"}
	RouteUSBRemove    = Route[USBRemoveRequest, Empty]{Verb: "usb-remove", Method: "POST", Path: "/v1/usb/remove"}
	RouteSpec         = Route[SpecRequest, SpecCopy]{Verb: "spec", Method: "GET", Path: "/v1/spec"}
)

// Routes is the whole protocol, one entry per verb. The shim serves exactly
// these (its tests check it).
var Routes = []RouteInfo{
	RouteStatus.Info(),
	RoutePower.Info(),
	RouteEvents.Info(),
	RouteConsole.Info(),
	RouteConsoleInput.Info(),
	RouteBlock.Info(),
	RouteMedium.Info(),
	RouteDisks.Info(),
	RouteDiskAdd.Info(),
	RouteDiskRemove.Info(),
	RouteDiskResize.Info(),
	RouteSnapshot.Info(),
	RouteBalloon.Info(),
	RouteBalloonSet.Info(),
	RouteUSB.Info(),
	RouteUSBAdd.Info(),
	RouteUSBRemove.Info(),
	RouteSpec.Info(),
}

// StatusRequest asks for the shim's view of its VM.
type StatusRequest struct{}

// PowerRequest asks for one of the seven power verbs. The answer is the
// Status once the shim accepted it; how it ends arrives as events.
type PowerRequest struct {
	Op api.PowerOp `json:"op"`
}

// EventsRequest streams the event log after the entry After, then live
// entries until the shim exits or the reader falls too far behind.
type EventsRequest struct {
	After uint64
}

// EncodeQuery puts the request in the query string.
func (r EventsRequest) EncodeQuery() url.Values {
	return url.Values{"after": {strconv.FormatUint(r.After, 10)}}
}

// DecodeQuery reads the request from the query string; no after is 0.
func (r *EventsRequest) DecodeQuery(q url.Values) error {
	s := q.Get("after")
	if s == "" {
		r.After = 0
		return nil
	}
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return errdefs.Invalid("after", "must be a sequence number")
	}
	r.After = n
	return nil
}

// ConsoleRequest asks for the tail of the guest's serial console.
type ConsoleRequest struct{}

// ConsoleTail is what the guest printed most recently, as text.
type ConsoleTail struct{ Data []byte }

// RawBytes is the body.
func (t ConsoleTail) RawBytes() []byte { return t.Data }

// SetRawBytes takes the body.
func (t *ConsoleTail) SetRawBytes(b []byte) { t.Data = b }

// ConsoleInput is typed into the guest's serial console, as it is.
type ConsoleInput struct{ Data []byte }

// RawBytes is the body.
func (in ConsoleInput) RawBytes() []byte { return in.Data }

// SetRawBytes takes the body.
func (in *ConsoleInput) SetRawBytes(b []byte) { in.Data = b }

// BlockRequest asks for the VM's block devices as QEMU has them.
type BlockRequest struct{}

// MediumRequest puts the ISO at Path into the running VM's CD-ROM drive
// named CDROM, in place of what it held; an empty Path ejects the medium.
// The shim's view of the spec follows, and the change is an event.
type MediumRequest struct {
	CDROM string `json:"cdrom"`
	Path  string `json:"path,omitempty"`
}

// Snapshot operations of the snapshot verb.
const (
	SnapshotCreate = "create"
	SnapshotDelete = "delete"
	SnapshotLoad   = "load"
)

// SnapshotRequest takes (Op create), deletes (Op delete) or loads (Op load,
// a Memory snapshot only) the internal snapshot Tag of the running VM's
// disks named Disks. A disk-only create pauses a running guest around one
// transaction over all the disks, so that they are snapshotted at one
// instant, and resumes it even when the transaction fails. With Memory a
// create is QEMU's snapshot-save job, its RAM and device state in the
// first disk, and a load is snapshot-load, the guest going on where it
// was. Each change, and a long job's progress, is an event.
type SnapshotRequest struct {
	Op     string   `json:"op"`
	Tag    string   `json:"tag"`
	Disks  []string `json:"disks"`
	Memory bool     `json:"memory,omitempty"`
}

// SnapshotResult answers the snapshot verb.
type SnapshotResult struct {
	// GuestPaused is how long a create held the running guest paused,
	// from QEMU's STOP event to its RESUME: around the disks' transaction,
	// or the whole of a memory save. It is 0 when the guest did not run.
	GuestPaused time.Duration `json:"guestPaused,omitempty"`
}

// Empty is an answer with nothing in it (204).
type Empty struct{}

// RouteInfo describes a route without its types' parameters, for tables
// and checks.
type RouteInfo struct {
	Verb, Method, Path string
	Request, Response  reflect.Type
	Stream             bool
}

// Pattern is "METHOD /path", as servers register it.
func (i RouteInfo) Pattern() string { return i.Method + " " + i.Path }

// Info describes r.
func (r Route[Req, Resp]) Info() RouteInfo {
	return RouteInfo{Verb: r.Verb, Method: r.Method, Path: r.Path, Stream: r.Stream,
		Request: reflect.TypeFor[Req](), Response: reflect.TypeFor[Resp]()}
}

// Pattern is "METHOD /path", as servers register it.
func (r Route[Req, Resp]) Pattern() string { return r.Method + " " + r.Path }

type queryEncoder interface{ EncodeQuery() url.Values }
type queryDecoder interface{ DecodeQuery(url.Values) error }
type rawEncoder interface{ RawBytes() []byte }
type rawDecoder interface{ SetRawBytes([]byte) }

// Content types of the bodies.
const (
	ContentJSON      = "application/json"
	ContentJSONLines = "application/x-ndjson"
	ContentText      = "text/plain; charset=utf-8"
)

// EncodeRequest returns the request target (path and query) and the body
// for req; a nil body sends none.
func (r Route[Req, Resp]) EncodeRequest(req Req) (target string, body []byte, err error) {
	target = r.Path
	if r.Method == "GET" {
		if q, ok := any(req).(queryEncoder); ok {
			if v := q.EncodeQuery(); len(v) > 0 {
				target += "?" + v.Encode()
			}
		}
		return target, nil, nil
	}
	if raw, ok := any(req).(rawEncoder); ok {
		return target, raw.RawBytes(), nil
	}
	body, err = json.Marshal(req)
	return target, body, err
}

// DecodeRequest rebuilds the request from what the server received. A body
// that does not parse is an InvalidArgument naming the body.
func (r Route[Req, Resp]) DecodeRequest(query url.Values, body []byte) (Req, error) {
	var req Req
	if r.Method == "GET" {
		if q, ok := any(&req).(queryDecoder); ok {
			return req, q.DecodeQuery(query)
		}
		return req, nil
	}
	if raw, ok := any(&req).(rawDecoder); ok {
		raw.SetRawBytes(body)
		return req, nil
	}
	if err := json.Unmarshal(body, &req); err != nil {
		return req, errdefs.Invalid("body", "%v", err)
	}
	return req, nil
}

// EncodeResponse returns the status code, content type and body of an
// answer. For a Stream route it encodes one item, with its newline.
func (r Route[Req, Resp]) EncodeResponse(resp Resp) (status int, contentType string, body []byte, err error) {
	if r.Stream {
		b, err := json.Marshal(resp)
		return 200, ContentJSONLines, append(b, '\n'), err
	}
	switch v := any(resp).(type) {
	case Empty:
		return 204, ContentText, nil, nil
	case rawEncoder:
		return 200, ContentText, v.RawBytes(), nil
	}
	b, err := json.Marshal(resp)
	return 200, ContentJSON, append(b, '\n'), err
}

// DecodeResponse parses an answer's body (for a Stream route, one line).
func (r Route[Req, Resp]) DecodeResponse(body []byte) (Resp, error) {
	var resp Resp
	if _, ok := any(resp).(Empty); ok && !r.Stream {
		return resp, nil
	}
	if raw, ok := any(&resp).(rawDecoder); ok && !r.Stream {
		raw.SetRawBytes(body)
		return resp, nil
	}
	err := json.Unmarshal(body, &resp)
	return resp, err
}
