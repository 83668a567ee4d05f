package errdefs

import (
	"errors"
	"testing"
)

// TestHTTPStatus: every class has its status; only Internal answers 500.
func TestHTTPStatus(t *testing.T) {
	want := map[Code]int{
		CodeInvalidArgument:    400,
		CodeNotFound:           404,
		CodeAlreadyExists:      409,
		CodeFailedPrecondition: 409,
		CodeResourceExhausted:  429,
		CodeUnavailable:        503,
		CodeDeadlineExceeded:   504,
		CodePermissionDenied:   403,
		CodeMethodNotAllowed:   405,
		CodeInternal:           500,
	}
	if len(want) != len(Codes) {
		t.Errorf("Codes lists %d classes, the table %d", len(Codes), len(want))
	}
	for _, c := range Codes {
		w, ok := want[c]
		if !ok {
			t.Errorf("%s has no expected status", c)
			continue
		}
		if got := c.HTTPStatus(); got != w {
			t.Errorf("%s answers %d, want %d", c, got, w)
		}
	}
}

func TestExhausted(t *testing.T) {
	err := error(Exhausted("ramGB", "%d MiB asked, the host has %d MiB", 4196352, 24032))
	if !errors.Is(err, &Error{Code: CodeResourceExhausted, Field: "ramGB"}) {
		t.Fatalf("%v is not ResourceExhausted on ramGB", err)
	}
	if got, want := err.Error(), "ResourceExhausted: ramGB: 4196352 MiB asked, the host has 24032 MiB"; got != want {
		t.Errorf("%q, want %q", got, want)
	}
}
