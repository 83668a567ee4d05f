package shimapi

import "encoding/json"

// SpecRequest asks for the spec the shim runs its VM with.
type SpecRequest struct{}

// SpecCopy is the shim's spec of its VM, as JSON in spec.json's format:
// what the agent recovers a lost or damaged spec.json from.
type SpecCopy struct {
	Spec json.RawMessage `json:"spec"`
}
