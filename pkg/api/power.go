package api

// PowerOp is one of the seven power verbs.
type PowerOp string

// The power verbs, spelled as the API's paths spell them.
const (
	PowerOn       PowerOp = "powerOn"       // start the VM
	PowerOff      PowerOp = "powerOff"      // ask the guest to power off (ACPI)
	ForcePowerOff PowerOp = "forcePowerOff" // stop QEMU at once, without asking the guest
	Suspend       PowerOp = "suspend"       // stop the guest's CPUs
	Resume        PowerOp = "resume"        // continue a suspended or paused guest
	Reset         PowerOp = "reset"         // press the reset button
	Restart       PowerOp = "restart"       // ACPI power-off, then reset, in the same QEMU
)

// PowerOps lists every power verb, in the order the API documents them.
var PowerOps = []PowerOp{PowerOn, PowerOff, ForcePowerOff, Suspend, Resume, Reset, Restart}

// Valid reports whether op is one of the seven power verbs.
func (op PowerOp) Valid() bool {
	for _, o := range PowerOps {
		if o == op {
			return true
		}
	}
	return false
}

// PowerRequest is the body of a shim's POST /v1/power.
type PowerRequest struct {
	Op PowerOp `json:"op"`
}
