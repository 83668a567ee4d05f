// Command notifier stands in for the shim in the supervisor's tests: it
// reports READY=1 and a STATUS= line through sd_notify, then waits for
// SIGTERM or a timer and exits with the code it was told to.
package main

import (
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
)

func main() {
	status := flag.String("status", "running", "text sent as STATUS=")
	readyDelay := flag.Duration("ready-delay", 0, "wait this long before READY=1")
	exitAfter := flag.Duration("exit-after", 0, "exit on its own after this long (0: wait for SIGTERM)")
	exitCode := flag.Int("exit-code", 0, "exit code when leaving on its own")
	termCode := flag.Int("term-code", 0, "exit code on SIGTERM")
	failEarly := flag.Int("fail-before-ready", -1, "exit with this code before READY=1")
	flag.Parse()

	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM)
	fmt.Println("notifier: starting")
	if *failEarly >= 0 {
		fmt.Println("notifier: failing before ready")
		os.Exit(*failEarly)
	}
	time.Sleep(*readyDelay)
	if _, err := daemon.SdNotify(false, "READY=1\nSTATUS="+*status); err != nil {
		fmt.Fprintln(os.Stderr, "notifier:", err)
		os.Exit(3)
	}
	fmt.Println("notifier: ready")
	var timer <-chan time.Time
	if *exitAfter > 0 {
		timer = time.After(*exitAfter)
	}
	select {
	case <-sigs:
		fmt.Println("notifier: SIGTERM")
		os.Exit(*termCode)
	case <-timer:
		fmt.Println("notifier: leaving on its own")
		os.Exit(*exitCode)
	}
}
