package api

// PowerOp is one of the seven power verbs.
type PowerOp string

const (
	PowerOn       PowerOp = "powerOn"
	PowerOff      PowerOp = "powerOff"
	ForcePowerOff PowerOp = "forcePowerOff"
	Suspend       PowerOp = "suspend"
	Resume        PowerOp = "resume"
	Reset         PowerOp = "reset"
	Restart       PowerOp = "restart"
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
