package vmspec

import (
	"errors"
	"testing"

	"github.com/infinibay/infinivirt/pkg/api"
	"github.com/infinibay/infinivirt/pkg/errdefs"
)

func TestBalloonRequestNamesTheField(t *testing.T) {
	const memory = 256
	refused := map[string]api.BalloonRequest{
		"no target":          {},
		"both units":         {TargetGB: 0.125, TargetMiB: 128},
		"a fraction of MiB":  {TargetGB: 0.1},
		"negative GiB":       {TargetGB: -0.125},
		"below the minimum":  {TargetMiB: MinBalloonMiB - 1},
		"negative MiB":       {TargetMiB: -128},
		"above the memory":   {TargetMiB: memory + 1},
		"GiB above memory":   {TargetGB: 0.5},
		"GiB below minimum":  {TargetGB: 1.0 / 32},
		"absurd GiB":         {TargetGB: 1e300},
		"MiB past int32 max": {TargetMiB: 1 << 40},
	}
	fields := map[string]string{
		"no target": "targetMiB", "both units": "targetGB", "a fraction of MiB": "targetGB", "negative GiB": "targetGB",
		"below the minimum": "targetMiB", "negative MiB": "targetMiB", "above the memory": "targetMiB",
		"GiB above memory": "targetGB", "GiB below minimum": "targetGB", "absurd GiB": "targetGB", "MiB past int32 max": "targetMiB",
	}
	for name, req := range refused {
		_, err := BalloonRequestMiB(req, memory)
		var e *errdefs.Error
		if !errors.As(err, &e) || e.Code != errdefs.CodeInvalidArgument || e.Field != fields[name] {
			t.Errorf("%s %+v: got %v, want InvalidArgument on %s", name, req, err, fields[name])
		}
	}
	for req, want := range map[api.BalloonRequest]int{
		{TargetMiB: 160}:           160,
		{TargetGB: 0.0625}:         64,
		{TargetGB: 0.25}:           memory,
		{TargetMiB: memory}:        memory,
		{TargetMiB: MinBalloonMiB}: MinBalloonMiB,
	} {
		if got, err := BalloonRequestMiB(req, memory); err != nil || got != want {
			t.Errorf("%+v: %d MiB (%v), want %d", req, got, err, want)
		}
	}
}

func TestBalloonTargetInTheSpec(t *testing.T) {
	s := storedSpec(t)
	if s.BalloonTargetMiB() != s.MemoryMiB {
		t.Fatalf("no target set: %d MiB, want all %d", s.BalloonTargetMiB(), s.MemoryMiB)
	}
	if !s.SetBalloonTarget(96) || s.Balloon().TargetMiB != 96 || s.BalloonTargetMiB() != 96 {
		t.Fatalf("target 96: %+v", s.Balloon())
	}
	if err := s.Validate(); err != nil {
		t.Fatal(err)
	}
	// The whole memory is no target: it must not pin the balloon once the
	// memory grows.
	if !s.SetBalloonTarget(s.MemoryMiB) || s.Balloon().TargetMiB != 0 {
		t.Fatalf("target = memory: %+v", s.Balloon())
	}
	s.SetBalloonTarget(96)
	s.MemoryMiB = 80
	var e *errdefs.Error
	if err := s.Validate(); !errors.As(err, &e) || e.Field != "devices[4].balloon.targetMiB" {
		t.Errorf("memory below the target: %v", err)
	}
	s.RemoveDevice("balloon0")
	if s.SetBalloonTarget(96) || s.BalloonTargetMiB() != s.MemoryMiB {
		t.Error("a spec without a balloon took a target")
	}
}

// Every created VM has a balloon unless the request opts out; the request
// fields of its devices still line up with the spec's.
func TestCreateGivesABalloonUnlessAskedNot(t *testing.T) {
	for _, balloon := range []*bool{nil, ptr(true), ptr(false)} {
		in := validInput()
		in.ISOPath = "/isos/os.iso"
		in.GPUPCIAddress = "01:00.0"
		in.Devices = []api.Device{{Type: api.DeviceNIC, NIC: &api.NICDevice{Bridge: "br1"}}}
		in.Balloon = balloon
		s, err := FromCreateInput(in, defaults)
		if err != nil {
			t.Fatal(err)
		}
		want := balloon == nil || *balloon
		if got := s.Balloon() != nil; got != want {
			t.Errorf("balloon %v: the spec has one: %v", fmtPtr(balloon), got)
		}
		if want && (s.Device("balloon0") == nil || s.Balloon().DeflateOnOOM || s.Balloon().TargetMiB != 0) {
			t.Errorf("balloon %v: %+v", fmtPtr(balloon), s.Device("balloon0"))
		}
		origins := createOrigins(in)
		if len(origins) != len(s.Devices) {
			t.Fatalf("balloon %v: %d origins for %d devices", fmtPtr(balloon), len(origins), len(s.Devices))
		}
		for i, o := range origins {
			if o.typ != s.Devices[i].Type {
				t.Errorf("balloon %v: origin %d is a %s, the device a %s", fmtPtr(balloon), i, o.typ, s.Devices[i].Type)
			}
		}
	}
	// A NIC of the request named like the balloon keeps its name.
	in := validInput()
	in.Devices = []api.Device{{Name: "balloon0", Type: api.DeviceNIC, NIC: &api.NICDevice{Bridge: "br1"}}}
	s, err := FromCreateInput(in, defaults)
	if err != nil || s.Device("balloon0").Type != api.DeviceNIC || s.Device("balloon1") == nil {
		t.Errorf("a NIC named balloon0: %+v (%v)", s, err)
	}
}

func ptr[T any](v T) *T { return &v }

func fmtPtr(b *bool) string {
	if b == nil {
		return "unset"
	}
	if *b {
		return "true"
	}
	return "false"
}
