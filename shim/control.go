package shim

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"time"

	"github.com/infinibay/infinivirt/pkg/api"
	"github.com/infinibay/infinivirt/pkg/shimapi"
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
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/status", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, s.liveStatus(r.Context()))
	})
	mux.HandleFunc("POST /v1/power", s.handlePower)
	mux.HandleFunc("GET /v1/events", s.handleEvents)
	mux.HandleFunc("GET /v1/console", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Write(s.console.Tail())
	})
	mux.HandleFunc("POST /v1/console", func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(io.LimitReader(r.Body, 64<<10))
		if err == nil {
			_, err = s.console.Write(b)
		}
		if err != nil {
			api.WriteError(w, api.Unavailable("console: %v", err))
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	s.server = &http.Server{Handler: mux}
	go s.server.Serve(ln)
	return nil
}

func (s *Shim) handlePower(w http.ResponseWriter, r *http.Request) {
	var req api.PowerRequest
	dec := json.NewDecoder(io.LimitReader(r.Body, 4096))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		api.WriteError(w, api.Invalid("body", "%v", err))
		return
	}
	if err := s.Power(r.Context(), req.Op); err != nil {
		api.WriteError(w, err)
		return
	}
	writeJSON(w, s.liveStatus(r.Context()))
}

// handleEvents streams the log after ?after=N as JSON lines, then live
// entries until the log closes (the shim is exiting) or the client leaves.
func (s *Shim) handleEvents(w http.ResponseWriter, r *http.Request) {
	after, err := strconv.ParseUint(r.URL.Query().Get("after"), 10, 64)
	if err != nil && r.URL.Query().Get("after") != "" {
		api.WriteError(w, api.Invalid("after", "must be a sequence number"))
		return
	}
	backlog, sub, err := s.events.Subscribe(after)
	if err != nil {
		api.WriteError(w, api.Unavailable("%v", err))
		return
	}
	defer sub.Cancel()
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.WriteHeader(http.StatusOK)
	enc := json.NewEncoder(w)
	flusher, _ := w.(http.Flusher)
	for _, e := range backlog {
		if enc.Encode(e) != nil {
			return
		}
	}
	if flusher != nil {
		flusher.Flush()
	}
	for {
		select {
		case e, ok := <-sub.C():
			if !ok {
				return
			}
			if enc.Encode(e) != nil {
				return
			}
			if flusher != nil {
				flusher.Flush()
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

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(v)
}
