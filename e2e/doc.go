// Package e2e proves Infinivirt end to end on the test bed: a real systemd
// as PID 1 of private namespaces runs the agent and one transient unit per
// VM, the shims run real QEMU (TCG) with the tiny test guest, and the agent
// aggregates into a real PostgreSQL cluster. The package holds tests only.
package e2e
