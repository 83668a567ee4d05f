package shimapi

import (
	"errors"
	"net/url"
	"reflect"
	"strings"
	"testing"

	"github.com/infinibay/infinivirt/pkg/api"
	"github.com/infinibay/infinivirt/pkg/errdefs"
)

func TestRoutesAreOnePerVerb(t *testing.T) {
	verbs, patterns := map[string]bool{}, map[string]bool{}
	for _, r := range Routes {
		if r.Verb == "" || !strings.HasPrefix(r.Path, "/v1/") || (r.Method != "GET" && r.Method != "POST") {
			t.Errorf("malformed route %+v", r)
		}
		if verbs[r.Verb] || patterns[r.Pattern()] {
			t.Errorf("%s (%s) is in the table twice", r.Verb, r.Pattern())
		}
		verbs[r.Verb], patterns[r.Pattern()] = true, true
		if r.Request.Kind() != reflect.Struct || r.Response.Kind() != reflect.Struct {
			t.Errorf("%s: request %s and response %s must be structs", r.Verb, r.Request, r.Response)
		}
	}
}

// roundTrip sends req the way a client would and decodes it the way the
// server does.
func roundTrip[Req, Resp any](t *testing.T, r Route[Req, Resp], req Req) (string, []byte, Req) {
	t.Helper()
	target, body, err := r.EncodeRequest(req)
	if err != nil {
		t.Fatalf("%s: encode: %v", r.Verb, err)
	}
	u, err := url.ParseRequestURI(target)
	if err != nil || u.Path != r.Path {
		t.Fatalf("%s: target %q", r.Verb, target)
	}
	got, err := r.DecodeRequest(u.Query(), body)
	if err != nil {
		t.Fatalf("%s: decode: %v", r.Verb, err)
	}
	return target, body, got
}

func TestRequestsTravelAsTheirTypesSay(t *testing.T) {
	if target, body, got := roundTrip(t, RouteEvents, EventsRequest{After: 42}); target != "/v1/events?after=42" || body != nil || got.After != 42 {
		t.Errorf("events: %q %q %+v", target, body, got)
	}
	if _, body, got := roundTrip(t, RoutePower, PowerRequest{Op: api.Suspend}); string(body) != `{"op":"suspend"}` || got.Op != api.Suspend {
		t.Errorf("power: %q %+v", body, got)
	}
	if _, body, got := roundTrip(t, RouteConsoleInput, ConsoleInput{Data: []byte("root\n")}); string(body) != "root\n" || string(got.Data) != "root\n" {
		t.Errorf("console input: %q %+v", body, got)
	}
	if target, body, _ := roundTrip(t, RouteStatus, StatusRequest{}); target != "/v1/status" || body != nil {
		t.Errorf("status: %q %q", target, body)
	}
}

func TestBadRequestsNameTheirField(t *testing.T) {
	_, err := RouteEvents.DecodeRequest(url.Values{"after": {"soon"}}, nil)
	if !errors.Is(err, &errdefs.Error{Code: errdefs.CodeInvalidArgument}) || errdefs.As(err).Field != "after" {
		t.Errorf("after=soon: %v", err)
	}
	if got, err := RouteEvents.DecodeRequest(url.Values{}, nil); err != nil || got.After != 0 {
		t.Errorf("no after: %+v %v", got, err)
	}
	_, err = RoutePower.DecodeRequest(nil, []byte(`{"op":`))
	if errdefs.As(err).Field != "body" {
		t.Errorf("truncated power body: %v", err)
	}
}

func TestResponsesTravelAsTheirTypesSay(t *testing.T) {
	status, ctype, body, err := RouteConsole.EncodeResponse(ConsoleTail{Data: []byte("login: ")})
	if err != nil || status != 200 || ctype != ContentText || string(body) != "login: " {
		t.Errorf("console: %d %s %q %v", status, ctype, body, err)
	}
	if tail, _ := RouteConsole.DecodeResponse(body); string(tail.Data) != "login: " {
		t.Errorf("console decoded %q", tail.Data)
	}
	if status, _, body, _ := RouteConsoleInput.EncodeResponse(Empty{}); status != 204 || body != nil {
		t.Errorf("console input: %d %q", status, body)
	}
	if _, err := RouteConsoleInput.DecodeResponse(nil); err != nil {
		t.Errorf("an empty answer: %v", err)
	}
	st := Status{VMID: "v", Status: api.StatusRunning, Reason: api.ReasonBooted, QEMUPID: 7, Seq: 3}
	_, ctype, body, _ = RouteStatus.EncodeResponse(st)
	if got, err := RouteStatus.DecodeResponse(body); err != nil || ctype != ContentJSON || got != st {
		t.Errorf("status: %s %+v %v", ctype, got, err)
	}
	_, ctype, line, _ := RouteEvents.EncodeResponse(api.Event{Seq: 9, Type: api.EventProgress})
	if ctype != ContentJSONLines || !strings.HasSuffix(string(line), "}\n") || strings.Count(string(line), "\n") != 1 {
		t.Errorf("event line %s %q", ctype, line)
	}
	if e, err := RouteEvents.DecodeResponse(line); err != nil || e.Seq != 9 {
		t.Errorf("event decoded %+v %v", e, err)
	}
}
