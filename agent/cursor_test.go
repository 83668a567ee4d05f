package agent

import (
	"errors"
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/infinibay/infinivirt/pkg/api"
	"github.com/infinibay/infinivirt/pkg/errdefs"
)

func TestParseCursor(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Cursor
	}{
		{"mh2k9x-0", Cursor{Epoch: "mh2k9x", N: 0}},
		{"mh2k9x-4096", Cursor{Epoch: "mh2k9x", N: 4096}},
		{vm1 + ":7", Cursor{Seqs: map[string]uint64{vm1: 7}}},
		{vm2 + ":0," + vm1 + ":12", Cursor{Seqs: map[string]uint64{vm1: 12, vm2: 0}}},
	} {
		got, err := ParseCursor(tc.in)
		if err != nil || got.Epoch != tc.want.Epoch || got.N != tc.want.N || !maps.Equal(got.Seqs, tc.want.Seqs) {
			t.Errorf("ParseCursor(%q) = %+v, %v; want %+v", tc.in, got, err, tc.want)
		}
	}
	for _, bad := range []string{"", "7", "-7", "mh2k9x-", "mh2k9x-x", "MH-1", "a b-1", "abcdefghijklmn-1",
		vm1 + ":", vm1 + ":-1", "not-a-vm:1", vm1 + ":1," + vm1 + ":2", vm1 + ":1,"} {
		if _, err := ParseCursor(bad); !errors.Is(err, &errdefs.Error{Code: errdefs.CodeInvalidArgument, Field: "after"}) {
			t.Errorf("ParseCursor(%q): %v, want InvalidArgument naming after", bad, err)
		}
	}
}

// A cursor read from a request either is refused naming after, or reads
// back the same from its own text.
func FuzzParseCursor(f *testing.F) {
	for _, s := range []string{"mh2k9x-12", vm1 + ":3," + vm2 + ":0", "x-", ":", ",", vm1 + ":18446744073709551615"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, err := ParseCursor(s)
		if err != nil {
			if !errors.Is(err, &errdefs.Error{Code: errdefs.CodeInvalidArgument, Field: "after"}) {
				t.Fatalf("%q: %v is not InvalidArgument naming after", s, err)
			}
			return
		}
		again, err := ParseCursor(c.String())
		if err != nil || again.Epoch != c.Epoch || again.N != c.N || !maps.Equal(again.Seqs, c.Seqs) {
			t.Fatalf("%q read as %+v, whose text %q reads as %+v, %v", s, c, c.String(), again, err)
		}
	})
}

func progress(vm string, seq uint64) api.Event {
	return api.Event{VMID: vm, Seq: seq, Time: time.Now(), Type: api.EventProgress}
}

func streamed(evs []StreamEvent) []uint64 {
	out := make([]uint64, len(evs))
	for i, e := range evs {
		out[i] = e.N
	}
	return out
}

// The ring gives exactly what followed a cursor, and the subscription
// everything after, with nothing between them; a cursor it cannot honour
// is refused, never ignored.
func TestBrokerResumesFromItsRing(t *testing.T) {
	b := newBroker()
	for i := range uint64(10) {
		b.publish([]api.Event{progress(vm1, i+1), progress(vm2, i+1)})
	}
	missed, sub, err := b.subscribeAfter(Cursor{Epoch: b.epoch, N: 15})
	if err != nil {
		t.Fatal(err)
	}
	defer b.unsubscribe(sub)
	if got := streamed(missed); !slices.Equal(got, seqs(16, 20)) {
		t.Errorf("missed after 15: %v, want 16..20", got)
	}
	if e := missed[0]; e.VMID != vm2 || e.Seq != 8 {
		t.Errorf("publication 16 is %s #%d, want %s #8", e.VMID, e.Seq, vm2)
	}
	b.publish([]api.Event{progress(vm1, 11)})
	if e := <-sub.ch; e.N != 21 || e.Seq != 11 {
		t.Errorf("the next publication is %d (#%d), want 21 (#11)", e.N, e.Seq)
	}

	for _, tc := range []struct {
		c    Cursor
		code errdefs.Code
	}{
		{Cursor{Epoch: "other", N: 3}, errdefs.CodeFailedPrecondition},
		{Cursor{Epoch: b.epoch, N: 22}, errdefs.CodeInvalidArgument},
	} {
		if _, _, err := b.subscribeAfter(tc.c); !errors.Is(err, &errdefs.Error{Code: tc.code}) {
			t.Errorf("cursor %s: %v, want %s", tc.c, err, tc.code)
		}
	}
	for i := range uint64(ringSize) {
		b.publish([]api.Event{progress(vm3, i+1)})
	}
	if _, _, err := b.subscribeAfter(Cursor{Epoch: b.epoch, N: 20}); !errors.Is(err, &errdefs.Error{Code: errdefs.CodeFailedPrecondition}) {
		t.Errorf("a cursor older than the ring: %v, want FailedPrecondition", err)
	}
	missed, sub2, err := b.subscribeAfter(Cursor{Epoch: b.epoch, N: 21})
	if err != nil || len(missed) != ringSize || missed[0].N != 22 {
		t.Fatalf("a cursor at the ring's end: %d missed from %v, %v", len(missed), streamed(missed[:1]), err)
	}
	b.unsubscribe(sub2)
}

func TestMergeByTimeKeepsEachLogsOrder(t *testing.T) {
	t0 := time.Now()
	at := func(vm string, seq uint64, ms int) api.Event {
		return api.Event{VMID: vm, Seq: seq, Time: t0.Add(time.Duration(ms) * time.Millisecond)}
	}
	// vm1's clock stepped back between its entries 2 and 3.
	got := mergeByTime([][]api.Event{
		{at(vm1, 1, 0), at(vm1, 2, 30), at(vm1, 3, 10)},
		{at(vm2, 1, 5), at(vm2, 2, 20)},
	})
	var order []string
	for _, e := range got {
		order = append(order, e.VMID[:1]+string(rune('0'+e.Seq)))
	}
	if want := []string{"11", "21", "22", "12", "13"}; !slices.Equal(order, want) {
		t.Errorf("merged %v, want %v", order, want)
	}
}
