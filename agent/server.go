package agent

import (
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/infinibay/infinivirt/pkg/api"
	"github.com/infinibay/infinivirt/pkg/errdefs"
	"github.com/infinibay/infinivirt/pkg/eventlog"
	"github.com/infinibay/infinivirt/pkg/unixhttp"
)

//go:embed openapi.json
var openAPI []byte

// maxBody bounds request bodies: a create request is well under a KiB.
const maxBody = 1 << 20

// Handler is the REST API. Peer credentials are checked by the listener
// before any of it runs (see Listen).
func (a *Agent) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /openapi.json", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write(openAPI)
	})
	mux.HandleFunc("GET /v1/health", a.handleHealth)
	mux.HandleFunc("GET /v1/vms", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, a.List())
	})
	mux.HandleFunc("POST /v1/vms", a.handleCreate)
	mux.HandleFunc("GET /v1/vms/{id}", func(w http.ResponseWriter, r *http.Request) {
		vm, err := a.Get(r.PathValue("id"))
		respond(w, http.StatusOK, vm, err)
	})
	mux.HandleFunc("DELETE /v1/vms/{id}", func(w http.ResponseWriter, r *http.Request) {
		force, err := boolParam(r, "force")
		if err == nil {
			err = a.Delete(r.Context(), r.PathValue("id"), force)
		}
		if err != nil {
			unixhttp.WriteError(w, err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("POST /v1/vms/{id}/{op}", a.handlePower)
	mux.HandleFunc("GET /v1/vms/{id}/console", a.handleConsole)
	mux.HandleFunc("GET /v1/vms/{id}/events", a.handleEvents)
	mux.HandleFunc("GET /v1/events", a.handleEvents)
	a.networkRoutes(mux)
	return mux
}

func (a *Agent) handleHealth(w http.ResponseWriter, r *http.Request) {
	db := "none"
	if a.sync.enabled() {
		db = "ok"
		a.sync.mu.Lock()
		if a.sync.down {
			db = "unavailable"
		}
		a.sync.mu.Unlock()
	}
	writeJSON(w, http.StatusOK, map[string]any{"vms": len(a.records()), "database": db, "accel": a.cfg.Accel})
}

func (a *Agent) handleCreate(w http.ResponseWriter, r *http.Request) {
	var in api.CreateVMInput
	if err := decodeStrict(r, &in); err != nil {
		unixhttp.WriteError(w, err)
		return
	}
	vm, err := a.Create(r.Context(), in)
	respond(w, http.StatusCreated, vm, err)
}

func (a *Agent) handlePower(w http.ResponseWriter, r *http.Request) {
	op := api.PowerOp(r.PathValue("op"))
	if !op.Valid() {
		unixhttp.WriteError(w, errdefs.NotFound("no such operation %q; power operations are %v", op, api.PowerOps))
		return
	}
	wait, err := boolParam(r, "wait")
	if err != nil {
		unixhttp.WriteError(w, err)
		return
	}
	ctx := r.Context()
	if t := r.URL.Query().Get("timeout"); t != "" {
		d, err := time.ParseDuration(t)
		if err != nil || d <= 0 {
			unixhttp.WriteError(w, errdefs.Invalid("timeout", "must be a positive duration like 90s, got %q", t))
			return
		}
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, d)
		defer cancel()
	}
	vm, err := a.Power(ctx, r.PathValue("id"), op, wait)
	code := http.StatusAccepted
	if wait {
		code = http.StatusOK
	}
	respond(w, code, vm, err)
}

func (a *Agent) handleConsole(w http.ResponseWriter, r *http.Request) {
	rec, err := a.get(r.PathValue("id"))
	if err != nil {
		unixhttp.WriteError(w, err)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), shimCallTimeout)
	defer cancel()
	b, err := a.shim(rec.id).Console(ctx)
	if err != nil {
		unixhttp.WriteError(w, err)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Write(b)
}

// handleEvents is a server-sent event stream, of one VM or of all. For one
// VM it first replays the log after ?after= (or Last-Event-ID), so a client
// that reconnects misses nothing.
func (a *Agent) handleEvents(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	var after uint64
	if id != "" {
		if _, err := a.get(id); err != nil {
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
	}
	flusher, ok := w.(http.Flusher)
	if !ok {
		unixhttp.WriteError(w, errdefs.Internal("streaming unsupported"))
		return
	}
	// Subscribe before reading the backlog: an entry applied in between is
	// in both, and send skips the second copy.
	sub := a.broker.subscribe(id)
	defer a.broker.unsubscribe(sub)
	var backlog []api.Event
	if id != "" && (r.URL.Query().Has("after") || r.Header.Get("Last-Event-ID") != "") {
		var err error
		if backlog, err = eventlog.ReadFile(a.cfg.Layout.EventsFile(id), after); err != nil {
			unixhttp.WriteError(w, errdefs.Internal("read the VM's event log: %v", err))
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
		case e, open := <-sub.ch:
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

// decodeStrict reads the request body, one JSON object of at most maxBody
// bytes, and refuses unknown fields, naming them.
func decodeStrict(r *http.Request, v any) error {
	return decodeJSON(http.MaxBytesReader(nil, r.Body, maxBody), v, "")
}

// decodeJSON reads exactly one JSON value into v, refusing unknown fields.
// where is the field the value sits in, empty for the request body: errors
// name fields under it, and name it (or "body") for the value as a whole.
func decodeJSON(rd io.Reader, v any, where string) error {
	whole, prefix := "body", ""
	if where != "" {
		whole, prefix = where, where+"."
	}
	dec := json.NewDecoder(rd)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var typeErr *json.UnmarshalTypeError
		var syntaxErr *json.SyntaxError
		var sizeErr *http.MaxBytesError
		switch {
		case errors.As(err, &typeErr) && typeErr.Field != "":
			return errdefs.Invalid(prefix+typeErr.Field, "must be a JSON %s, got %s", typeErr.Type, typeErr.Value)
		case errors.As(err, &typeErr):
			return errdefs.Invalid(whole, "must be a JSON object, got %s", typeErr.Value)
		case errors.As(err, &syntaxErr):
			return errdefs.Invalid(whole, "malformed JSON at byte %d: %v", syntaxErr.Offset, err)
		case errors.As(err, &sizeErr):
			return errdefs.Invalid(whole, "is larger than %d bytes", sizeErr.Limit)
		case strings.HasPrefix(err.Error(), "json: unknown field "):
			field := strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
			return errdefs.Invalid(prefix+field, "is not a known field")
		default:
			return errdefs.Invalid(whole, "malformed JSON: %v", err)
		}
	}
	if _, err := dec.Token(); err != io.EOF {
		return errdefs.Invalid(whole, "must hold exactly one JSON object")
	}
	return nil
}

func boolParam(r *http.Request, name string) (bool, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return false, nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, errdefs.Invalid(name, "must be true or false, got %q", v)
	}
	return b, nil
}

func respond(w http.ResponseWriter, code int, v any, err error) {
	if err != nil {
		unixhttp.WriteError(w, err)
		return
	}
	writeJSON(w, code, v)
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}
