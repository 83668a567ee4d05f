package qmp_test

import (
	"context"
	"encoding/json"
	"testing"
)

// BenchmarkQueryStatus measures one command round trip against real QEMU
// over the socketpair: encode, write, QEMU's dispatch, read, decode.
func BenchmarkQueryStatus(b *testing.B) {
	vm := startQEMU(b, qemuSetup{args: machineNone})
	ctx := context.Background()
	for b.Loop() {
		if _, err := vm.QueryStatus(ctx); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N), "ns/roundtrip")
}

// BenchmarkQueryStatusParallel has many goroutines share the connection, as
// the shim's control socket handlers do.
func BenchmarkQueryStatusParallel(b *testing.B) {
	vm := startQEMU(b, qemuSetup{args: machineNone})
	ctx := context.Background()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := vm.QueryStatus(ctx); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "commands/s")
}

// BenchmarkQueryQMPSchema measures the largest reply QEMU gives.
func BenchmarkQueryQMPSchema(b *testing.B) {
	vm := startQEMU(b, qemuSetup{args: machineNone})
	ctx := context.Background()
	var size int
	for b.Loop() {
		var raw json.RawMessage
		if err := vm.Execute(ctx, "query-qmp-schema", nil, &raw); err != nil {
			b.Fatal(err)
		}
		size = len(raw)
	}
	b.SetBytes(int64(size))
	b.ReportMetric(float64(size), "reply-bytes")
}
