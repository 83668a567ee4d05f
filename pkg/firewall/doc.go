// Package firewall enforces Infinibay's firewall rules for VMs in the
// kernel, through google/nftables (never by building nft command strings).
//
// # Model
//
// A Rule is Infinibay's FirewallRule (JSON names srcPortStart, dstIpMask,
// connectionState, overridesDept, ...). A RuleSet holds rules and service
// presets (ssh, http, https, rdp, vnc) for a Department or one VM. A
// DepartmentPolicy is BLOCK_ALL (allow_internet, allow_outbound, block_all)
// or ALLOW_ALL (block_ssh, block_smb, block_databases, none); its default
// config becomes rules at priority 100, replies are accepted at priority 50
// (Infinibay's "established" rule) and its terminal action ends every VM
// chain. Validate beside each type names the field at fault with its index
// path ("rules[2].dstPortEnd").
//
// ComputeEffective is the pure merge of a department's and a VM's rules: a
// VM rule with overridesDept removes the department rules (per direction)
// that match the same traffic, that is the same protocol, ports and
// addresses (ApplyOverrides, SameTraffic); the rest is sorted by priority,
// VM rules first among equals.
//
// # Kernel layout
//
// One table, "bridge infinivirt". Per-VM filtering happens in the bridge
// family, keyed on the VM's TAP: bridged frames reach inet hooks only
// through br_netfilter, where the TAP is not visible.
//
//   - Base chains at the forward hook (VM to VM), the input hook (VM to
//     host: gateway, DNS, DHCP, the backend on the bridge address) and the
//     output hook (host to VM). Each has one rule, a verdict-map lookup by
//     TAP name ("iifname vmap @vm-out", "oifname vmap @vm-in"), so the cost
//     per packet does not grow with the number of VMs. The forward hook has
//     two base chains, from-VM first, so that the sender's accept (which
//     ends only its base chain) still meets the receiver's check.
//   - Per VM, vm-<id>-out and vm-<id>-in: the always-on guards first (only
//     the VM's MAC as source, ARP only for its own MAC and addresses once
//     known, its own IPv4 sources once known, DHCP client traffic out and
//     server answers in, a VM answering as DHCP server dropped), with named
//     counters for every spoofing drop; then the VM's own rules inline, in
//     priority order, with a jump to the department chain of each
//     department priority; then a jump to the department's end chain,
//     which holds the policy's terminal action.
//   - Per department, dept-<id>-<dir>-p<priority>: its rules of one
//     priority, once, shared by all its VMs. Chains for the fixed
//     priorities 50, 100, 500 and 600 always exist, even empty, so rule
//     edits there, preset toggles and policy changes rewrite only the
//     department's chains. A VM that overrides part of a priority gets the
//     rest of it copied inline instead of the jump.
//
// # Applying
//
// Every change is one atomic batch (Flush): ApplyVM (a VM start or a VM
// rule edit), ApplyDepartment (a department edit, rewriting VM chains only
// when a new priority appears or the VM overrides department rules),
// Resync (everything), RemoveVM (idempotent, for the shim's cleanup).
// After a batch the chains, address sets and dispatch entries are read
// back (GetRules, GetSetElements) and compared, in the textual form Plan
// and RuleText define, with what was rendered. When the batch or the
// comparison fails, a second, minimal batch puts a drop at the head of the
// VMs' chains and maps their TAPs to them: the traffic ends dropped, never
// open, and the rules that were there stay readable below the drop.
// Options.FailBatch injects a failure for tests. Bad input (validation or
// a missing kernel feature) is refused before anything is sent.
//
// # Kernel features
//
// Probe tries, each in a throwaway table deleted in the same batch, "ct
// state" (nf_conntrack_bridge), "reject" reached from the forward hook
// (nft_reject_bridge) and bridge meta keys (nft_meta_bridge). Rules that
// need a missing feature are refused with a FailedPrecondition naming the
// field, for example "kernel lacks nf_conntrack_bridge: connectionState
// needs it". Without conntrack the caller may choose stateless mode
// (Options.Stateless), which tells connection state from packet headers:
// TCP flags (SYN without ACK is new) and ICMP types, and derives from each
// accept rule a reply rule for its flow the other way. It never widens a
// rule silently: a state it cannot tell apart is refused, and the reply
// rules it adds show in ComputeEffective and in the kernel's comments
// (":reply"). STATELESS.md, beside this file, lists exactly where it is
// weaker than conntrack.
//
// It is one of the project's own packages, with no compatibility promise
// to outside importers; a backend uses pkg/api and pkg/agentclient.
package firewall
