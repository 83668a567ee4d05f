package shim

import (
	"context"
	"encoding/json"
	"net"
	"os"
	"strconv"
	"time"

	"github.com/infinibay/infinivirt/pkg/api"
	"github.com/infinibay/infinivirt/pkg/errdefs"
	"github.com/infinibay/infinivirt/pkg/shimapi"
	"github.com/infinibay/infinivirt/pkg/tinyhttp"
)

// serveControl opens the control socket (mode 0600: only root may drive the VM).
func (s *Shim) serveControl(ctx context.Context) error {
	path := s.cfg.Layout.ShimSocket(s.cfg.VMID)
	ln, err := net.Listen("unix", path)
	if err != nil {
		return err
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return err
	}
	srv := tinyhttp.New()
	srv.Handle("GET /v1/status", func(w *tinyhttp.Response, r *tinyhttp.Request) {
		writeJSON(w, s.liveStatus(r.Context()))
	})
	srv.Handle("POST /v1/power", s.handlePower)
	srv.Handle("GET /v1/events", s.handleEvents)
	srv.Handle("GET /v1/console", func(w *tinyhttp.Response, r *tinyhttp.Request) {
		w.Start(200, "text/plain; charset=utf-8")
		w.Write(s.console.Tail())
	})
	srv.Handle("POST /v1/console", func(w *tinyhttp.Response, r *tinyhttp.Request) {
		if err := s.console.Write(r.Body); err != nil {
			writeError(w, errdefs.Unavailable("console: %v", err))
		}
	})
	s.server = srv
	go srv.Serve(ln)
	return nil
}

func (s *Shim) handlePower(w *tinyhttp.Response, r *tinyhttp.Request) {
	var req api.PowerRequest
	if err := json.Unmarshal(r.Body, &req); err != nil {
		writeError(w, errdefs.Invalid("body", "%v", err))
		return
	}
	if err := s.Power(r.Context(), req.Op); err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, s.liveStatus(r.Context()))
}

// handleEvents streams the log after ?after=N as JSON lines, then live
// entries until the log closes (the shim is exiting) or the client leaves.
func (s *Shim) handleEvents(w *tinyhttp.Response, r *tinyhttp.Request) {
	after, err := strconv.ParseUint(r.Query.Get("after"), 10, 64)
	if err != nil && r.Query.Get("after") != "" {
		writeError(w, errdefs.Invalid("after", "must be a sequence number"))
		return
	}
	backlog, sub, err := s.events.Subscribe(after)
	if err != nil {
		writeError(w, errdefs.Unavailable("%v", err))
		return
	}
	defer sub.Cancel()
	w.Start(200, "application/x-ndjson")
	enc := json.NewEncoder(w)
	for _, e := range backlog {
		if enc.Encode(e) != nil {
			return
		}
	}
	if w.Flush() != nil {
		return
	}
	for {
		select {
		case e, ok := <-sub.C():
			if !ok {
				return
			}
			if enc.Encode(e) != nil || w.Flush() != nil {
				return
			}
		case <-r.Context().Done():
			return
		}
	}
}

// liveStatus is Status with QEMU's own run state asked for just now.
func (s *Shim) liveStatus(ctx context.Context) shimapi.Status {
	st := s.Status()
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if info, err := s.qmp.QueryStatus(ctx); err == nil {
		st.QMPStatus = info.Status
	} else {
		st.QMPStatus = "unknown: " + err.Error()
	}
	return st
}

func writeJSON(w *tinyhttp.Response, v any) {
	w.Start(200, "application/json")
	json.NewEncoder(w).Encode(v)
}

func writeError(w *tinyhttp.Response, err error) {
	e := errdefs.As(err)
	w.Start(e.Code.HTTPStatus(), "application/json")
	json.NewEncoder(w).Encode(api.ErrorBody{Error: e})
}
