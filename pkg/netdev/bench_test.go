package netdev

import (
	"fmt"
	"testing"
	"time"
)

// BenchmarkCreateAttachCloseTAP measures one VM's network start and stop:
// create the TAP, attach it to a bridge, set it up, and close its fds,
// which removes it. Reusing one name proves each TAP is gone before the
// next. The two halves are reported apart: closing waits for the kernel to
// unregister the device.
func BenchmarkCreateAttachCloseTAP(b *testing.B) {
	for _, queues := range []int{1, 4} {
		b.Run(fmt.Sprintf("queues=%d", queues), func(b *testing.B) {
			inFreshNetns(b)
			ctx := testCtx(b)
			if _, err := EnsureBridge(ctx, BridgeConfig{Name: "ivbench0"}); err != nil {
				b.Fatal(err)
			}
			cfg := TAPConfig{Name: "ivtbench0", Bridge: "ivbench0", GuestMAC: guestMAC, Queues: queues}
			var n int
			var creating, closing time.Duration
			for b.Loop() {
				start := time.Now()
				tap, err := CreateTAP(ctx, cfg)
				if err != nil {
					b.Fatal(err)
				}
				created := time.Now()
				if err := tap.Close(); err != nil {
					b.Fatal(err)
				}
				creating += created.Sub(start)
				closing += time.Since(created)
				n++
			}
			b.ReportMetric(float64(creating.Microseconds())/float64(n), "create-µs/tap")
			b.ReportMetric(float64(closing.Microseconds())/float64(n), "close-µs/tap")
		})
	}
}
