package shimapi

// BalloonQuery asks for the running VM's memory as its balloon has it:
// the target, what the guest has now (query-balloon) and the statistics
// its driver last reported (the balloon's guest-stats).
type BalloonQuery struct{}

// BalloonTarget asks the running guest to leave its balloon TargetBytes of
// memory (QMP balloon), a whole number of MiB up to the VM's memory. The
// shim's view of the spec follows, and the change is an event.
type BalloonTarget struct {
	TargetBytes int64 `json:"targetBytes"`
}
