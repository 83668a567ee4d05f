package httpapi

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/infinibay/infinivirt/pkg/api"
	"github.com/infinibay/infinivirt/pkg/errdefs"
	"github.com/infinibay/infinivirt/pkg/unixhttp"
)

const eventsDescription = "A server-sent event stream: each event's data is an Event in JSON, its event field " +
	"the event's type, and its id the sequence number (prefixed with the VM's id and ':' on the stream of every VM). " +
	"A comment line keeps the connection alive every 15 s. The stream ends when the VM is deleted or the reader " +
	"falls behind; resume with after or Last-Event-ID."

var eventRoutes = []Route{{
	Method: http.MethodGet, Path: "/v1/vms/{id}/events", OperationID: "streamVMEvents", Tag: "events",
	Summary:     "Follow one VM's events, first replaying its log after a sequence number",
	Description: eventsDescription,
	Params: []Param{
		{Name: "after", In: "query", Type: typeOf[uint64](), Description: "replay the VM's log after this sequence number"},
		{Name: "Last-Event-ID", In: "header", Type: typeOf[string](), Description: "as after, for a reconnecting event source"},
	},
	Response: typeOf[api.Event](),
	Media:    "text/event-stream",
	Status:   []int{http.StatusOK},
	Errors:   []errdefs.Code{errdefs.CodeInvalidArgument, errdefs.CodeNotFound, errdefs.CodeInternal},
	handle:   (*server).streamEvents,
}, {
	Method: http.MethodGet, Path: "/v1/events", OperationID: "streamEvents", Tag: "events",
	Summary:     "Follow every VM's events",
	Description: eventsDescription,
	Response:    typeOf[api.Event](),
	Media:       "text/event-stream",
	Status:      []int{http.StatusOK},
	Errors:      []errdefs.Code{errdefs.CodeInternal},
	handle:      (*server).streamEvents,
}}

// streamEvents is a server-sent event stream, of one VM or of all. For one
// VM it first replays the log after ?after= (or Last-Event-ID), so a client
// that reconnects misses nothing.
func (s *server) streamEvents(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	var after uint64
	replay := false
	if id != "" {
		if _, err := s.a.Get(id); err != nil {
			unixhttp.WriteError(w, err)
			return
		}
		from := r.URL.Query().Get("after")
		if from == "" {
			from = r.Header.Get("Last-Event-ID")
		}
		if from != "" {
			n, err := strconv.ParseUint(from, 10, 64)
			if err != nil {
				unixhttp.WriteError(w, errdefs.Invalid("after", "must be a sequence number, got %q", from))
				return
			}
			after = n
		}
		replay = r.URL.Query().Has("after") || r.Header.Get("Last-Event-ID") != ""
	}
	flusher, ok := w.(http.Flusher)
	if !ok {
		unixhttp.WriteError(w, errdefs.Internal("streaming unsupported"))
		return
	}
	// Subscribe before reading the backlog: an entry applied in between is
	// in both, and send skips the second copy.
	events, cancel := s.a.Subscribe(id)
	defer cancel()
	var backlog []api.Event
	if replay {
		var err error
		if backlog, err = s.a.EventBacklog(id, after); err != nil {
			unixhttp.WriteError(w, err)
			return
		}
	}
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	last := map[string]uint64{}
	send := func(e api.Event) bool {
		if e.Seq <= last[e.VMID] {
			return true
		}
		last[e.VMID] = e.Seq
		b, _ := json.Marshal(e)
		eid := strconv.FormatUint(e.Seq, 10)
		if id == "" {
			eid = e.VMID + ":" + eid
		}
		_, err := fmt.Fprintf(w, "id: %s\nevent: %s\ndata: %s\n\n", eid, e.Type, b)
		return err == nil
	}
	for _, e := range backlog {
		if !send(e) {
			return
		}
	}
	flusher.Flush()
	heartbeat := time.NewTicker(15 * time.Second)
	defer heartbeat.Stop()
	for {
		select {
		case e, open := <-events:
			if !open {
				return
			}
			if !send(e) {
				return
			}
			flusher.Flush()
		case <-heartbeat.C:
			if _, err := io.WriteString(w, ": keep-alive\n\n"); err != nil {
				return
			}
			flusher.Flush()
		case <-r.Context().Done():
			return
		}
	}
}
