package httpapi

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/infinibay/infinivirt/agent"
	"github.com/infinibay/infinivirt/pkg/api"
	"github.com/infinibay/infinivirt/pkg/errdefs"
	"github.com/infinibay/infinivirt/pkg/unixhttp"
)

const eventsDescription = "A server-sent event stream: each event's data is an Event in JSON and its event " +
	"field the event's type. A comment line keeps the connection alive every 15 s. The stream ends when the VM " +
	"is deleted or the reader falls behind; resume with after or Last-Event-ID."

const vmEventsDescription = eventsDescription + " Each event's id is its sequence number."

const allEventsDescription = eventsDescription + " Each event's id is a cursor, <epoch>-<n>: the agent keeps its " +
	"last 4096 events, so a reader that resumes from a cursor of this run of the agent misses nothing. Events " +
	"replayed from the VMs' logs carry no id but the last of them, and a line with only an id moves the cursor " +
	"past an event the reader already has. A cursor of an earlier run of the agent or older than what it keeps " +
	"is refused with FailedPrecondition: resume then with id:seq,... , each VM's last sequence (as " +
	"infinivirt.vm_events holds it), which replays each VM's log after it, every VM not named from its first " +
	"entry, and a deleted event for each VM named that no longer exists. Every event is identified by its vmId " +
	"and seq."

var eventRoutes = []Route{{
	Method: http.MethodGet, Path: "/v1/vms/{id}/events", OperationID: "streamVMEvents", Tag: "events",
	Summary:     "Follow one VM's events, first replaying its log after a sequence number",
	Description: vmEventsDescription,
	Params: []Param{
		{Name: "after", In: "query", Type: typeOf[uint64](), Description: "replay the VM's log after this sequence number"},
		{Name: "Last-Event-ID", In: "header", Type: typeOf[string](), Description: "as after, for a reconnecting event source"},
	},
	Response: typeOf[api.Event](),
	Media:    "text/event-stream",
	Status:   []int{http.StatusOK},
	Errors:   []errdefs.Code{errdefs.CodeInvalidArgument, errdefs.CodeNotFound, errdefs.CodeInternal},
	handle:   (*server).streamVMEvents,
}, {
	Method: http.MethodGet, Path: "/v1/events", OperationID: "streamEvents", Tag: "events",
	Summary:     "Follow every VM's events, first replaying what followed a cursor",
	Description: allEventsDescription,
	Params: []Param{
		{Name: "after", In: "query", Type: typeOf[string](), Description: "a cursor: <epoch>-<n> from the stream's ids, or id:seq,... for each VM"},
		{Name: "Last-Event-ID", In: "header", Type: typeOf[string](), Description: "as after, for a reconnecting event source; it wins over after"},
	},
	Response: typeOf[api.Event](),
	Media:    "text/event-stream",
	Status:   []int{http.StatusOK},
	Errors:   []errdefs.Code{errdefs.CodeInvalidArgument, errdefs.CodeFailedPrecondition, errdefs.CodeInternal},
	handle:   (*server).streamAllEvents,
}}

// streamVMEvents is the stream of one VM. It first replays the log after
// ?after= (or Last-Event-ID), so a client that reconnects misses nothing.
func (s *server) streamVMEvents(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if _, err := s.a.Get(id); err != nil {
		unixhttp.WriteError(w, err)
		return
	}
	from := r.URL.Query().Get("after")
	if from == "" {
		from = r.Header.Get("Last-Event-ID")
	}
	var after uint64
	if from != "" {
		n, err := strconv.ParseUint(from, 10, 64)
		if err != nil {
			unixhttp.WriteError(w, errdefs.Invalid("after", "must be a sequence number, got %q", from))
			return
		}
		after = n
	}
	// Subscribe before reading the backlog: an entry applied in between is
	// in both, and the stream skips the second copy.
	events, cancel := s.a.Subscribe(id)
	defer cancel()
	var backlog []agent.StreamEvent
	if r.URL.Query().Has("after") || r.Header.Get("Last-Event-ID") != "" {
		evs, err := s.a.EventBacklog(id, after)
		if err != nil {
			unixhttp.WriteError(w, err)
			return
		}
		for _, e := range evs {
			backlog = append(backlog, agent.StreamEvent{Event: e})
		}
	}
	sse{w: w, r: r, seen: map[string]uint64{}, id: func(e agent.StreamEvent) string {
		return strconv.FormatUint(e.Seq, 10)
	}}.run(backlog, events)
}

// streamAllEvents is the stream of every VM, resumed from a cursor.
func (s *server) streamAllEvents(w http.ResponseWriter, r *http.Request) {
	after := r.Header.Get("Last-Event-ID")
	if after == "" {
		after = r.URL.Query().Get("after")
	}
	st, err := s.a.StreamAll(after)
	if err != nil {
		unixhttp.WriteError(w, err)
		return
	}
	defer st.Close()
	epoch := s.a.StreamEpoch()
	sse{w: w, r: r, seen: st.Seen, id: func(e agent.StreamEvent) string {
		if e.N == 0 {
			return ""
		}
		return agent.Cursor{Epoch: epoch, N: e.N}.String()
	}}.run(st.Missed, st.Events)
}

// sse writes a server-sent event stream: a backlog, then live events, each
// VM's in sequence order and once.
type sse struct {
	w    http.ResponseWriter
	r    *http.Request
	seen map[string]uint64 // each VM's last sequence sent
	id   func(agent.StreamEvent) string
}

func (s sse) run(backlog []agent.StreamEvent, events <-chan agent.StreamEvent) {
	flusher, ok := s.w.(http.Flusher)
	if !ok {
		unixhttp.WriteError(s.w, errdefs.Internal("streaming unsupported"))
		return
	}
	s.w.Header().Set("Content-Type", "text/event-stream")
	s.w.Header().Set("Cache-Control", "no-cache")
	s.w.WriteHeader(http.StatusOK)
	for _, e := range backlog {
		if !s.send(e) {
			return
		}
	}
	flusher.Flush()
	heartbeat := time.NewTicker(15 * time.Second)
	defer heartbeat.Stop()
	for {
		select {
		case e, open := <-events:
			if !open || !s.send(e) {
				return
			}
			flusher.Flush()
		case <-heartbeat.C:
			if _, err := io.WriteString(s.w, ": keep-alive\n\n"); err != nil {
				return
			}
			flusher.Flush()
		case <-s.r.Context().Done():
			return
		}
	}
}

// send writes one event; one the reader already has only moves its id on.
func (s sse) send(e agent.StreamEvent) bool {
	var err error
	id := s.id(e)
	switch {
	case e.Seq <= s.seen[e.VMID] && id == "":
		return true
	case e.Seq <= s.seen[e.VMID]:
		_, err = fmt.Fprintf(s.w, "id: %s\n\n", id)
	default:
		s.seen[e.VMID] = e.Seq
		b, _ := json.Marshal(e.Event)
		if id != "" {
			_, err = fmt.Fprintf(s.w, "id: %s\n", id)
		}
		if err == nil {
			_, err = fmt.Fprintf(s.w, "event: %s\ndata: %s\n\n", e.Type, b)
		}
	}
	return err == nil
}
