// Package api holds every type the agent's REST API sends or receives, one
// file per resource: VMs with their statuses and reasons in Infinibay's
// vocabulary (vm.go, status.go), power verbs, events, unattended installs,
// firewalls, bridges, health, and the error body. A backend may import it,
// with pkg/agentclient, to speak the API; the shim and the CLI use it too.
// The agent's OpenAPI document is generated from these types.
//
// With pkg/agentclient it is the project's public Go surface: a backend may
// rely on both, and they change only compatibly (new fields, new routes).
// Every other package is the project's own.
package api
