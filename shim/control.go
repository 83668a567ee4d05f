package shim

import (
	"context"
	"encoding/json"
	"net"
	"os"
	"strings"
	"time"

	"github.com/infinibay/infinivirt/pkg/api"
	"github.com/infinibay/infinivirt/pkg/errdefs"
	"github.com/infinibay/infinivirt/pkg/peerconn"
	"github.com/infinibay/infinivirt/pkg/shimapi"
	"github.com/infinibay/infinivirt/shim/internal/tinyhttp"
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
	srv := s.controlServer()
	s.server = srv
	// Only root reaches the socket, but a client of root's that stalls
	// must not hold the agent's way to the VM either: see peerconn.Limit.
	capped := &peerconn.Listener{UnixListener: ln.(*net.UnixListener), Limit: peerconn.NewLimit(controlConnsPerUID), Log: s.log}
	// The socket outlives this step, whose ctx ends with it: requests end
	// when their client leaves or teardown shuts the socket down.
	go s.serve(context.WithoutCancel(ctx), srv, capped)
	return nil
}

// controlConnsPerUID caps a peer's connections to the control socket. The
// agent holds one event stream and the calls in flight.
const controlConnsPerUID = 64

// serve runs the control socket until teardown shuts it down. An earlier
// end leaves the VM running but out of the agent's reach, so it is logged.
func (s *Shim) serve(ctx context.Context, srv *tinyhttp.Server, ln net.Listener) {
	if err := srv.Serve(ctx, ln); err != nil {
		s.log.Error("control socket stopped serving; the agent can no longer drive this VM", "ERROR", err.Error())
	}
}

// stopControl closes the event log first, which ends every event stream
// after its last entry, so that clients see the final status before the
// socket goes; then it lets the last requests finish.
func (s *Shim) stopControl(ctx context.Context) error {
	s.events.Close()
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	return s.server.Shutdown(ctx)
}

// controlServer routes every verb of shimapi.Routes to its handler.
func (s *Shim) controlServer() *tinyhttp.Server {
	srv := tinyhttp.New()
	handle(srv, shimapi.RouteStatus, func(ctx context.Context, _ shimapi.StatusRequest) (shimapi.Status, error) {
		return s.liveStatus(ctx), nil
	})
	handle(srv, shimapi.RoutePower, func(ctx context.Context, req shimapi.PowerRequest) (shimapi.Status, error) {
		if err := s.Power(ctx, req.Op); err != nil {
			return shimapi.Status{}, err
		}
		return s.liveStatus(ctx), nil
	})
	handleStream(srv, shimapi.RouteEvents, s.streamEvents)
	handle(srv, shimapi.RouteConsole, func(context.Context, shimapi.ConsoleRequest) (shimapi.ConsoleTail, error) {
		return shimapi.ConsoleTail{Data: s.console.Tail()}, nil
	})
	handle(srv, shimapi.RouteConsoleInput, func(_ context.Context, in shimapi.ConsoleInput) (shimapi.Empty, error) {
		if err := s.console.Write(in.Data); err != nil {
			return shimapi.Empty{}, errdefs.Unavailable("console: %v", err)
		}
		return shimapi.Empty{}, nil
	})
	handle(srv, shimapi.RouteBlock, s.queryBlock)
	handle(srv, shimapi.RouteMedium, s.changeMedium)
	handle(srv, shimapi.RouteDisks, s.queryDisks)
	handle(srv, shimapi.RouteDiskAdd, s.addDisk)
	handle(srv, shimapi.RouteDiskRemove, s.removeDisk)
	handle(srv, shimapi.RouteDiskResize, s.resizeDisk)
	handle(srv, shimapi.RouteSnapshot, s.snapshot)
	handle(srv, shimapi.RouteBalloon, s.queryBalloon)
	handle(srv, shimapi.RouteBalloonSet, s.setBalloon)
	handle(srv, shimapi.RouteUSB, s.queryUSB)
	handle(srv, shimapi.RouteUSBAdd, s.addUSB)
	handle(srv, shimapi.RouteUSBRemove, s.removeUSB)
	handle(srv, shimapi.RouteSpec, s.specCopy)
	return srv
}

// specCopy answers the spec this shim runs the VM with, from which the
// agent recovers a spec.json that was lost or damaged under a running VM.
func (s *Shim) specCopy(context.Context, shimapi.SpecRequest) (shimapi.SpecCopy, error) {
	b, err := json.Marshal(s.spec)
	if err != nil {
		return shimapi.SpecCopy{}, errdefs.Internal("spec: %v", err)
	}
	return shimapi.SpecCopy{Spec: b}, nil
}

// queryBlock lists the VM's block devices from QMP query-block.
func (s *Shim) queryBlock(ctx context.Context, _ shimapi.BlockRequest) (api.BlockDevices, error) {
	ctx, cancel := context.WithTimeout(ctx, qmpTimeout)
	defer cancel()
	var infos []struct {
		QDev      string `json:"qdev"`
		Removable bool   `json:"removable"`
		TrayOpen  bool   `json:"tray_open"`
		Inserted  *struct {
			NodeName string `json:"node-name"`
			File     string `json:"file"`
			Driver   string `json:"drv"`
			ReadOnly bool   `json:"ro"`
		} `json:"inserted"`
	}
	if err := s.qmp.Execute(ctx, "query-block", nil, &infos); err != nil {
		return api.BlockDevices{}, qmpFailed(err)
	}
	out := api.BlockDevices{Devices: []api.BlockDevice{}}
	for _, in := range infos {
		// A device's backend is "/machine/peripheral/<id>/..." or just its id.
		name := in.QDev
		if rest, ok := strings.CutPrefix(name, "/machine/peripheral/"); ok {
			name, _, _ = strings.Cut(rest, "/")
		}
		d := api.BlockDevice{Name: name, Removable: in.Removable, TrayOpen: in.TrayOpen}
		if m := in.Inserted; m != nil {
			if d.Name == "" {
				d.Name = m.NodeName
			}
			d.File, d.Format, d.ReadOnly, d.MediumInserted = m.File, m.Driver, m.ReadOnly, true
		}
		out.Devices = append(out.Devices, d)
	}
	return out, nil
}

// handle serves route with h: the request decoded by the route's rules, the
// answer or the typed error encoded by them.
func handle[Req, Resp any](srv *tinyhttp.Server, route shimapi.Route[Req, Resp], h func(context.Context, Req) (Resp, error)) {
	srv.Handle(route.Pattern(), func(ctx context.Context, w *tinyhttp.Response, r *tinyhttp.Request) {
		req, err := route.DecodeRequest(r.Query, r.Body)
		if err != nil {
			writeError(w, err)
			return
		}
		resp, err := h(ctx, req)
		if err != nil {
			writeError(w, err)
			return
		}
		status, ctype, body, err := route.EncodeResponse(resp)
		if err != nil {
			writeError(w, errdefs.Internal("encode %s answer: %v", route.Verb, err))
			return
		}
		// Writes fail only once the client has gone: nobody is left to tell.
		if w.Start(status, ctype) == nil {
			_, _ = w.Write(body)
		}
	})
}

// streamWriter sends a stream route's items. Nothing goes out before the
// first Send or Flush, so a handler may still answer with an error until then.
type streamWriter[Req, Resp any] struct {
	route   shimapi.Route[Req, Resp]
	w       *tinyhttp.Response
	started bool
}

// Send encodes one item; Flush pushes what was sent to the client.
func (sw *streamWriter[Req, Resp]) Send(item Resp) error {
	_, ctype, b, err := sw.route.EncodeResponse(item)
	if err != nil {
		return err
	}
	sw.started = true
	if err := sw.w.Start(200, ctype); err != nil {
		return err
	}
	_, err = sw.w.Write(b)
	return err
}

func (sw *streamWriter[Req, Resp]) Flush() error {
	sw.started = true
	if err := sw.w.Start(200, shimapi.ContentJSONLines); err != nil {
		return err
	}
	return sw.w.Flush()
}

// handleStream serves a stream route: h sends items until it returns. An
// error before anything was sent is the answer.
func handleStream[Req, Resp any](srv *tinyhttp.Server, route shimapi.Route[Req, Resp], h func(context.Context, Req, *streamWriter[Req, Resp]) error) {
	srv.Handle(route.Pattern(), func(ctx context.Context, w *tinyhttp.Response, r *tinyhttp.Request) {
		req, err := route.DecodeRequest(r.Query, r.Body)
		if err != nil {
			writeError(w, err)
			return
		}
		out := &streamWriter[Req, Resp]{route: route, w: w}
		if err := h(ctx, req, out); err != nil && !out.started {
			writeError(w, err)
		}
	})
}

// streamEvents sends the log after req.After, then live entries until the
// log closes (the shim is exiting) or the client leaves.
func (s *Shim) streamEvents(ctx context.Context, req shimapi.EventsRequest, out *streamWriter[shimapi.EventsRequest, api.Event]) error {
	backlog, sub, err := s.events.Subscribe(req.After)
	if err != nil {
		return errdefs.Unavailable("%v", err)
	}
	defer sub.Cancel()
	for _, e := range backlog {
		if out.Send(e) != nil {
			return nil
		}
	}
	if out.Flush() != nil {
		return nil
	}
	for {
		select {
		case e, ok := <-sub.C():
			if !ok {
				return nil
			}
			if out.Send(e) != nil || out.Flush() != nil {
				return nil
			}
		case <-ctx.Done():
			return nil
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
		st.QMPStatus, st.QMPError = "unknown", err.Error()
	}
	return st
}

// writeError answers with err in the typed error shape.
func writeError(w *tinyhttp.Response, err error) {
	e := errdefs.As(err)
	// Writes fail only once the client has gone: nobody is left to tell.
	if w.Start(e.Code.HTTPStatus(), "application/json") == nil {
		_ = json.NewEncoder(w).Encode(api.ErrorBody{Error: e})
	}
}
