package netdev

import (
	"errors"
	"testing"

	"github.com/infinibay/infinivirt/pkg/errdefs"
)

func TestMoveTAPBetweenBridges(t *testing.T) {
	inFreshNetns(t)
	ctx := testCtx(t)
	for _, br := range []string{"br-a", "br-b"} {
		if _, err := EnsureBridge(ctx, BridgeConfig{Name: br}); err != nil {
			t.Fatal(err)
		}
	}
	tap, err := CreateTAP(ctx, TAPConfig{Name: "tap-move", Bridge: "br-a", GuestMAC: GenerateMAC(), Queues: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer tap.Close()
	if err := MoveTAP(ctx, "tap-move", "br-b"); err != nil {
		t.Fatal(err)
	}
	infos, err := ListBridges(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ports := map[string][]string{}
	for _, b := range infos {
		ports[b.Name] = b.Ports
	}
	if len(ports["br-a"]) != 0 || len(ports["br-b"]) != 1 || ports["br-b"][0] != "tap-move" {
		t.Fatalf("ports after the move: %v", ports)
	}
	if err := MoveTAP(ctx, "tap-move", "br-none"); !errors.Is(err, ErrBridgeNotFound) {
		t.Fatalf("move to a missing bridge: %v", err)
	}
	if err := MoveTAP(ctx, "br-a", "br-b"); !errors.Is(err, ErrNotTAP) {
		t.Fatalf("moving a bridge as a TAP: %v", err)
	}
	if err := MoveTAP(ctx, "tap-none", "br-b"); err == nil {
		t.Fatal("moving a missing TAP succeeded")
	}
	if err := MoveTAP(ctx, "tap%d", "br-b"); !errors.Is(err, &errdefs.Error{Code: errdefs.CodeInvalidArgument, Field: "name"}) {
		t.Fatalf("moving a TAP with an invalid name: %v", err)
	}
}
