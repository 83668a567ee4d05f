package e2e

import (
	"context"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/infinibay/infinivirt/pkg/api"
	"github.com/infinibay/infinivirt/pkg/errdefs"
	"github.com/infinibay/infinivirt/pkg/vmspec"
)

// footprint is what a failed create must not leave behind.
type footprint struct{ units, dirs, taps string }

func (b *bed) footprint(t *testing.T) footprint {
	return footprint{
		units: b.run(t, "sh", "-c", "systemctl list-units --all --no-legend --plain 'infinivirt-shim@*' | sort"),
		dirs:  b.run(t, "ls", "-A", vmspec.DefaultLayout.VMsDir()),
		taps:  b.run(t, "sh", "-c", "ip -o link show | grep -o 'ivt[0-9a-f]*' | sort || true"),
	}
}

// expectRefusal posts a create body and checks that it is refused with a
// typed 4xx error of class code naming field; it returns the raw answer.
func (b *bed) expectRefusal(t *testing.T, ctx context.Context, body []byte, code errdefs.Code, field string) []byte {
	t.Helper()
	status, resp, err := b.client.RawRequest(ctx, http.MethodPost, "/v1/vms", body)
	if err != nil {
		t.Fatal(err)
	}
	var eb api.ErrorBody
	if err := json.Unmarshal(resp, &eb); err != nil || eb.Error == nil {
		t.Fatalf("status %d, body %s: not a typed error", status, resp)
	}
	if status/100 != 4 || eb.Error.Code != code || eb.Error.Field != field {
		t.Fatalf("got %d %s field=%q %q; want 4xx %s naming %q", status, eb.Error.Code, eb.Error.Field, eb.Error.Message, code, field)
	}
	if eb.Error.Code.HTTPStatus() != status {
		t.Fatalf("status %d does not match class %s", status, eb.Error.Code)
	}
	return resp
}

func TestBadInputIsRefusedAndLeavesNothing(t *testing.T) {
	b := setup(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	existing, _ := b.vmInput("existing")
	f := false
	existing.Start = &f
	owner, err := b.client.Create(ctx, existing)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.deleteVM(owner.ID) })

	cases := []struct {
		name   string
		field  string
		code   errdefs.Code
		mutate func(*api.CreateVMInput)
		raw    string
	}{
		{name: "bad MAC", field: "macAddress", code: errdefs.CodeInvalidArgument,
			mutate: func(in *api.CreateVMInput) { in.MACAddress = "01:00:5e:00:00:01" }},
		{name: "zero CPUs", field: "cpuCores", code: errdefs.CodeInvalidArgument,
			mutate: func(in *api.CreateVMInput) { in.CPUCores = 0 }},
		{name: "more memory than the host has", field: "ramGB", code: errdefs.CodeResourceExhausted,
			mutate: func(in *api.CreateVMInput) { in.RAMGB = 4097 }},
		{name: "more vCPUs than the host has CPUs", field: "cpuCores", code: errdefs.CodeResourceExhausted,
			mutate: func(in *api.CreateVMInput) { in.CPUCores = vmspec.MaxCPUs }},
		{name: "missing bridge", field: "networkBridge", code: errdefs.CodeInvalidArgument,
			mutate: func(in *api.CreateVMInput) { in.NetworkBridge = "nosuchbr0" }},
		{name: "duplicate uuid", field: "internalName", code: errdefs.CodeAlreadyExists,
			mutate: func(in *api.CreateVMInput) { in.InternalName = owner.ID }},
		{name: "VNC password over 8 characters", field: "graphicPassword", code: errdefs.CodeInvalidArgument,
			mutate: func(in *api.CreateVMInput) { in.GraphicPassword = "123456789" }},
		{name: "graphic port in use", field: "graphicPort", code: errdefs.CodeAlreadyExists,
			mutate: func(in *api.CreateVMInput) { in.GraphicPort = owner.GraphicPort }},
		{name: "relative iso path", field: "isoPath", code: errdefs.CodeInvalidArgument,
			mutate: func(in *api.CreateVMInput) { in.ISOPath = "images/install.iso" }},
		{name: "dot-dot iso path", field: "isoPath", code: errdefs.CodeInvalidArgument,
			mutate: func(in *api.CreateVMInput) { in.ISOPath = "/var/lib/../../etc/shadow" }},
		{name: "kernel QEMU cannot boot (start fails, create rolls back)", code: errdefs.CodeFailedPrecondition,
			mutate: func(in *api.CreateVMInput) { in.Boot.Kernel = "/etc/os-release" }},
		{name: "malformed JSON", field: "body", code: errdefs.CodeInvalidArgument,
			raw: `{"name": "x", "cpuCores": 1,`},
		{name: "wrong JSON type", field: "cpuCores", code: errdefs.CodeInvalidArgument,
			raw: `{"name": "x", "cpuCores": "two"}`},
		{name: "unknown field", field: "cpuCount", code: errdefs.CodeInvalidArgument,
			raw: `{"name": "x", "cpuCount": 2}`},
	}
	before := b.footprint(t)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			body := []byte(tc.raw)
			if tc.mutate != nil {
				in, _ := b.vmInput("bad")
				tc.mutate(&in)
				body, _ = json.Marshal(in)
			}
			b.expectRefusal(t, ctx, body, tc.code, tc.field)
		})
	}
	if after := b.footprint(t); after != before {
		t.Fatalf("refused requests left state behind:\nbefore %+v\nafter  %+v", before, after)
	}
}
