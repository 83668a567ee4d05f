// Package api holds every type the agent's REST API sends or receives, one
// file per resource: VMs with their statuses and reasons in Infinibay's
// vocabulary (vm.go, status.go), power verbs, events, unattended installs,
// firewalls, bridges, health, and the error body. A backend may import it,
// with pkg/agentclient, to speak the API; the shim and the CLI use it too.
// The agent's OpenAPI document is generated from these types.
//
// The json tags are the contract, and the document is derived from them:
//   - A field without omitempty is in every answer, so it is required
//     there, and it is required in a request too, unless it has a
//     default:"<JSON value>" tag: then the server fills that value when a
//     request leaves the field out. A field with omitempty may be absent
//     either way; give it a default tag too when absence means a value
//     (start: true). A type with a default-tagged field that answers also
//     carry has a second schema for requests, named with Input.
//   - An answer never carries null for a list or a map: an empty one is
//     [] or {}. A pointer field without omitempty may be null.
//
// With pkg/agentclient it is the project's public Go surface: a backend may
// rely on both, and they change only compatibly (new fields, new routes).
// Every other package is the project's own.
package api
