package firewall

import (
	"context"
	"encoding/binary"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/infinibay/infinivirt/pkg/errdefs"
)

// Options configure a Firewall.
type Options struct {
	// NetNSFd selects the network namespace to program; 0 is the caller's.
	NetNSFd int
	// Stateless renders connection state from packet headers (see
	// STATELESS.md). Without it, a kernel without nf_conntrack_bridge
	// refuses every department, since replies need connection tracking.
	Stateless bool
	// Caps skips the probe when set.
	Caps *Capabilities
	// FailBatch, for tests, makes the kernel reject the batch of the named
	// operation ("apply-vm", "apply-department", "remove-vm"): a rule with
	// a jump to a missing chain is added to it.
	FailBatch func(op string) bool
}

// Firewall programs the "bridge infinivirt" table. Every change is one
// atomic batch; a failed batch leaves the VMs it concerned dropped.
//
// Callers keep one writer per VM at a time; different VMs may be changed
// from different processes (the agent and each VM's shim) concurrently.
type Firewall struct {
	mode      Mode
	netns     int
	failBatch func(string) bool
	mu        sync.Mutex // one operation at a time from this value
	// changes counts the change batches sent (not probes, fail-closed
	// drops or pruning), so tests can see that a change is one batch.
	changes atomic.Int64
	// last is the cost of the last change, for benchmarks.
	last struct {
		batch, verify time.Duration
		rules         int
	}
}

// New probes the kernel (unless opts.Caps is set) and returns a Firewall.
func New(ctx context.Context, opts Options) (*Firewall, error) {
	f := &Firewall{netns: opts.NetNSFd, failBatch: opts.FailBatch}
	f.mode.Stateless = opts.Stateless
	if opts.Caps != nil {
		f.mode.Caps = *opts.Caps
	} else {
		caps, err := ProbeNetNS(ctx, opts.NetNSFd)
		if err != nil {
			return nil, err
		}
		f.mode.Caps = caps
	}
	return f, nil
}

// Mode is the rendering mode: the probed capabilities and stateless or not.
func (f *Firewall) Mode() Mode { return f.mode }

// ApplyError reports a batch the kernel refused or a read-back that did not
// match. FailClosed is nil when the fail-closed drop for the VMs is in
// place; otherwise it says why that failed too.
type ApplyError struct {
	Op         string
	VMs        []string
	Err        error
	FailClosed error
}

func (e *ApplyError) Error() string {
	s := fmt.Sprintf("firewall %s (VMs %s): %v", e.Op, strings.Join(e.VMs, ", "), e.Err)
	if e.FailClosed != nil {
		return s + "; fail-closed drop also failed: " + e.FailClosed.Error()
	}
	return s + "; the VMs' traffic is dropped"
}

func (e *ApplyError) Unwrap() error { return e.Err }

// ApplyVM installs a VM's chains and dispatch in one batch: what a VM
// start or a VM rule edit does. The department's shared chains the VM
// jumps to are created from d when missing; existing ones are left as they
// are, since department edits are ApplyDepartment's and the kernel may
// already hold a newer department than the caller read (when d has a
// priority the kernel's department lacks, that one chain comes from d).
// Bad input changes nothing in the kernel.
func (f *Firewall) ApplyVM(ctx context.Context, d Department, v VM) error {
	if err := f.mode.CheckVM(v); err != nil {
		return prefixField(err, "vm")
	}
	p, err := Render(f.mode, d, v)
	if err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	existing, err := f.deptChains(ctx, d.ID)
	if err != nil {
		return err
	}
	sub := p.subset(func(name string) bool { return !existing[name] }, func(string) bool { return true })
	return f.apply(ctx, "apply-vm", sub, sub.dispatch)
}

// ApplyDepartment applies a department edit in one batch: its shared
// chains are rewritten in place, so VM chains that merely jump to them stay
// as they are. A VM chain is rewritten too when the department's set of
// chains changed (a priority came or went) or when the VM has rules with
// overridesDept, since its chains may copy department rules. vms must be
// all of the department's running VMs, as last applied: a VM's own rule
// edits go through ApplyVM. On failure they all end dropped. Chains the
// department no longer has are deleted afterwards where no VM uses them.
func (f *Firewall) ApplyDepartment(ctx context.Context, d Department, vms []VM) error {
	return f.applyDepartment(ctx, d, vms, false)
}

// Resync rewrites a department and all of vms in one batch, whatever the
// kernel holds: for the agent's start, after a reboot or any doubt.
func (f *Firewall) Resync(ctx context.Context, d Department, vms []VM) error {
	return f.applyDepartment(ctx, d, vms, true)
}

func (f *Firewall) applyDepartment(ctx context.Context, d Department, vms []VM, all bool) error {
	// Check everything before looking at the kernel; render no VM yet.
	p, err := render(f.mode, d, vms, func(VM) bool { return false })
	if err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	existing, err := f.deptChains(ctx, d.ID)
	if err != nil {
		return err
	}
	layoutChanged := len(existing) != len(p.layout)
	for _, name := range p.layout {
		layoutChanged = layoutChanged || !existing[name]
	}
	rewrite := func(v VM) bool {
		return all || layoutChanged || slices.ContainsFunc(v.RuleSet.Rules, func(r Rule) bool { return r.OverridesDept })
	}
	if p, err = render(f.mode, d, vms, rewrite); err != nil {
		return err
	}
	var everyVM []dispatchEntry
	for _, v := range vms {
		everyVM = append(everyVM, v.dispatch()...)
	}
	if err := f.apply(ctx, "apply-department", p, everyVM); err != nil {
		return err
	}
	var gone []string
	for name := range existing {
		if !slices.Contains(p.layout, name) {
			gone = append(gone, name)
		}
	}
	f.tryDelete(ctx, gone)
	return nil
}

// deptChains lists the department's chains in the kernel.
func (f *Firewall) deptChains(ctx context.Context, deptID string) (map[string]bool, error) {
	names, err := f.chainNames(ctx)
	if err != nil {
		return nil, err
	}
	out := map[string]bool{}
	for name := range names {
		if deptOf(name) == deptID {
			out[name] = true
		}
	}
	return out, nil
}

// chainNames lists the chains of the table.
func (f *Firewall) chainNames(ctx context.Context) (map[string]bool, error) {
	c, err := dial(ctx, f.netns, 0)
	if err != nil {
		return nil, err
	}
	defer c.close()
	return c.chainNames()
}

func (c *conn) chainNames() (map[string]bool, error) {
	chains, err := c.ListChainsOfTableFamily(nftables.TableFamilyBridge)
	if err != nil {
		return nil, fmt.Errorf("list chains: %w", err)
	}
	out := map[string]bool{}
	for _, ch := range chains {
		if ch.Table.Name == TableName {
			out[ch.Name] = true
		}
	}
	return out, nil
}

// deptOf is the department ID in a department chain's name
// (dept-<id>-<dir>-p<prio> or dept-<id>-<dir>-end), or "".
func deptOf(name string) string {
	parts := strings.Split(name, "-")
	if len(parts) < 4 || parts[0] != "dept" {
		return ""
	}
	return strings.Join(parts[1:len(parts)-2], "-")
}

// apply writes the plan, reads it back and, when either fails, drops the
// traffic of the failClose VMs.
func (f *Firewall) apply(ctx context.Context, op string, p *Plan, failClose []dispatchEntry) error {
	err := f.write(ctx, op, p)
	if err == nil {
		start := time.Now()
		err = f.verify(ctx, p)
		f.last.verify = time.Since(start)
	}
	if err == nil {
		return nil
	}
	e := &ApplyError{Op: op, Err: err}
	for _, d := range failClose {
		if !slices.Contains(e.VMs, d.vmID) {
			e.VMs = append(e.VMs, d.vmID)
		}
	}
	e.FailClosed = f.failClosed(ctx, failClose)
	return e
}

func (f *Firewall) write(ctx context.Context, op string, p *Plan) error {
	start := time.Now()
	c, err := dial(ctx, f.netns, p.messages())
	if err != nil {
		return err
	}
	defer c.close()
	if err := p.queue(c.Conn); err != nil {
		return err
	}
	if f.failBatch != nil && f.failBatch(op) {
		c.AddRule(&nftables.Rule{Table: table, Chain: &nftables.Chain{Name: chainFromVMForward, Table: table},
			Exprs: []expr.Any{jump("injected-fault-missing-chain")}})
	}
	f.changes.Add(1)
	err = c.flush(ctx)
	f.last.batch, f.last.rules = time.Since(start), 0
	for _, pc := range p.chains {
		f.last.rules += len(pc.rules)
	}
	if err != nil {
		return fmt.Errorf("batch refused by the kernel: %w", err)
	}
	return nil
}

// messages is about how many netlink messages the plan's batch holds.
func (p *Plan) messages() int {
	n := 1 + 3*len(p.sets) + len(p.counters) + 2*len(p.dispatch)
	for _, s := range p.sets {
		n += len(s.elems)
	}
	for _, c := range p.chains {
		n += 2 + len(c.rules)
	}
	return n
}

// queue adds the plan's batch to c, in the order the kernel needs: table,
// sets, counters, every chain (created and emptied), then rules, then the
// dispatch entries that jump into the chains.
func (p *Plan) queue(c *nftables.Conn) error {
	c.AddTable(table)
	for i, s := range p.sets {
		s.set.ID = uint32(i + 1)
		if err := c.AddSet(s.set, nil); err != nil {
			return err
		}
		if s.replace {
			c.FlushSet(s.set)
		}
		if len(s.elems) > 0 {
			if err := c.SetAddElements(s.set, s.elems); err != nil {
				return err
			}
		}
	}
	for _, pc := range p.counters {
		c.AddObj(&nftables.NamedObj{Table: table, Name: pc.name, Type: nftables.ObjTypeCounter, Obj: &expr.Counter{}})
	}
	for _, pc := range p.chains {
		c.AddChain(pc.chain)
		c.FlushChain(pc.chain)
	}
	for _, pc := range p.chains {
		for _, r := range pc.rules {
			c.AddRule(r)
		}
	}
	return addDispatch(c, p.dispatch)
}

func hasTable(ts []*nftables.Table) bool {
	for _, t := range ts {
		if t.Name == TableName {
			return true
		}
	}
	return false
}

// dispatchSets are the two dispatch maps. String keys are stored in host
// byte order, so that nft lists them as names.
func dispatchSets() (from, to *nftables.Set) {
	m := func(name string) *nftables.Set {
		return &nftables.Set{Table: table, Name: name, IsMap: true, KeyType: nftables.TypeIFName,
			DataType: nftables.TypeVerdict, KeyByteOrder: binaryutil.NativeEndian}
	}
	return m(mapFromVM), m(mapToVM)
}

func dispatchElems(ds []dispatchEntry) (from, to []nftables.SetElement) {
	for _, d := range ds {
		from = append(from, nftables.SetElement{Key: ifnameKey(d.tap), VerdictData: &expr.Verdict{Kind: expr.VerdictJump, Chain: vmChain(d.vmID, d.nic, Out)}})
		to = append(to, nftables.SetElement{Key: ifnameKey(d.tap), VerdictData: &expr.Verdict{Kind: expr.VerdictJump, Chain: vmChain(d.vmID, d.nic, In)}})
	}
	return from, to
}

func addDispatch(c *nftables.Conn, ds []dispatchEntry) error {
	if len(ds) == 0 {
		return nil
	}
	fs, ts := dispatchSets()
	fe, te := dispatchElems(ds)
	if err := c.SetAddElements(fs, fe); err != nil {
		return err
	}
	return c.SetAddElements(ts, te)
}

// failClosedComment marks the drop a failed change leaves at the head of a
// VM's chains.
const failClosedComment = "guard:fail-closed"

// failClosed puts a drop at the head of each NIC's chains, creating the
// table skeleton, the chains and the dispatch entries as needed. Rules
// already in the chains stay below the drop, readable.
func (f *Firewall) failClosed(ctx context.Context, ds []dispatchEntry) error {
	if len(ds) == 0 {
		return nil
	}
	skeleton := &Plan{}
	skeleton.renderBase()
	c, err := dial(context.WithoutCancel(ctx), f.netns, 64+8*len(ds))
	if err != nil {
		return err
	}
	defer c.close()
	if err := skeleton.queue(c.Conn); err != nil {
		return err
	}
	for _, d := range ds {
		for _, dir := range []Direction{Out, In} {
			ch := c.AddChain(&nftables.Chain{Name: vmChain(d.vmID, d.nic, dir), Table: table})
			c.InsertRule(&nftables.Rule{Table: table, Chain: ch, Exprs: []expr.Any{&expr.Counter{}, verdict(expr.VerdictDrop)},
				UserData: userdata.AppendString(nil, userdata.TypeComment, failClosedComment)})
		}
	}
	if err := addDispatch(c.Conn, ds); err != nil {
		return err
	}
	return c.flush(ctx)
}

// MismatchError reports a chain or set whose read-back differs from what
// was rendered.
type MismatchError struct {
	Object    string
	Want, Got string
}

func (e *MismatchError) Error() string {
	return fmt.Sprintf("read-back of %s differs from what was rendered:\nwant:\n%s\ngot:\n%s", e.Object, e.Want, e.Got)
}

// verify reads the plan's chains, VM address sets and dispatch entries back
// from the kernel and compares them, in textual form, with the plan.
func (f *Firewall) verify(ctx context.Context, p *Plan) error {
	c, err := dial(ctx, f.netns, 0)
	if err != nil {
		return err
	}
	defer c.close()
	for _, pc := range p.chains {
		got, err := c.GetRules(table, pc.chain)
		if err != nil {
			return fmt.Errorf("read back chain %s: %w", pc.chain.Name, err)
		}
		if w, g := rulesText(pc.rules), rulesText(got); w != g {
			return &MismatchError{Object: "chain " + pc.chain.Name, Want: w, Got: g}
		}
	}
	for _, s := range p.sets {
		if !s.replace {
			continue
		}
		got, err := c.GetSetElements(s.set)
		if err != nil {
			return fmt.Errorf("read back set %s: %w", s.set.Name, err)
		}
		if w, g := elemsText(s.set, s.elems), elemsText(s.set, got); w != g {
			return &MismatchError{Object: "set " + s.set.Name, Want: w, Got: g}
		}
	}
	if len(p.dispatch) == 0 {
		return nil
	}
	fs, ts := dispatchSets()
	fe, te := dispatchElems(p.dispatch)
	for _, m := range []struct {
		set  *nftables.Set
		want []nftables.SetElement
	}{{fs, fe}, {ts, te}} {
		got, err := c.GetSetElements(m.set)
		if err != nil {
			return fmt.Errorf("read back map %s: %w", m.set.Name, err)
		}
		have := map[string]string{}
		for _, e := range got {
			have[string(e.Key)] = verdictOfElem(e)
		}
		for _, e := range m.want {
			if w, g := verdictText(e.VerdictData), have[string(e.Key)]; w != g {
				return &MismatchError{Object: fmt.Sprintf("map %s element %s", m.set.Name, formatValue(kindIfname, e.Key)), Want: w, Got: g}
			}
		}
	}
	return nil
}

func rulesText(rs []*nftables.Rule) string {
	var b strings.Builder
	for _, r := range rs {
		b.WriteString(RuleText(r))
		b.WriteString("\n")
	}
	return b.String()
}

func elemsText(s *nftables.Set, es []nftables.SetElement) string {
	k := kindOfSetKey(s.KeyType)
	var vals []string
	for _, e := range es {
		vals = append(vals, formatValue(k, e.Key))
	}
	sort.Strings(vals)
	return strings.Join(vals, ", ")
}

// verdictOfElem decodes the verdict of a map element as read back.
func verdictOfElem(e nftables.SetElement) string {
	v, ok := decodeVerdict(e)
	if !ok {
		return fmt.Sprintf("[undecodable %x]", e.Val)
	}
	return verdictText(v)
}

// jumpTarget is the chain a map element jumps to, or "".
func jumpTarget(e nftables.SetElement) string {
	if v, ok := decodeVerdict(e); ok && v.Kind == expr.VerdictJump {
		return v.Chain
	}
	return ""
}

// decodeVerdict decodes the verdict of a map element: the library hands
// over the nested verdict attributes of a read-back undecoded.
func decodeVerdict(e nftables.SetElement) (*expr.Verdict, bool) {
	if e.VerdictData != nil {
		return e.VerdictData, true
	}
	ad, err := netlink.NewAttributeDecoder(e.Val)
	if err != nil {
		return nil, false
	}
	ad.ByteOrder = binary.BigEndian
	var v expr.Verdict
	for ad.Next() {
		switch ad.Type() {
		case unix.NFTA_VERDICT_CODE:
			v.Kind = expr.VerdictKind(int32(ad.Uint32()))
		case unix.NFTA_VERDICT_CHAIN:
			v.Chain = ad.String()
		}
	}
	return &v, ad.Err() == nil
}

// RemoveVM deletes a VM's chains, sets, counters and dispatch entries, of
// every NIC, in one batch. It asks the kernel which NICs the VM has chains
// for, so the shim's cleanup needs no spec and also removes the objects of
// a NIC the spec no longer lists. It is idempotent: what is missing is
// created and deleted in the same batch, so it can run after any failure.
func (f *Firewall) RemoveVM(ctx context.Context, vmID string) error {
	if !objectIDRE.MatchString(vmID) {
		return errdefs.Invalid("id", "must be 1-64 letters, digits, '_' or '-', got %q", vmID)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	c, err := dial(ctx, f.netns, 0)
	if err != nil {
		return err
	}
	defer c.close()
	tables, err := c.ListTablesOfFamily(nftables.TableFamilyBridge)
	if err != nil {
		return fmt.Errorf("list tables: %w", err)
	}
	if !hasTable(tables) {
		return nil // no table, nothing to remove
	}
	chains, err := c.chainNames()
	if err != nil {
		return err
	}
	nics := vmNICs(vmID, chains)
	if !slices.Contains(nics, PrimaryNIC) {
		nics = append(nics, PrimaryNIC)
	}
	entries, err := c.dispatchOf(vmID)
	if err != nil {
		return err
	}
	c.AddTable(table)
	fs, ts := dispatchSets()
	fe, te := dispatchElems(entries)
	for _, m := range []struct {
		set  *nftables.Set
		elem []nftables.SetElement
	}{{fs, fe}, {ts, te}} {
		m.set.ID = 1
		if err := c.AddSet(m.set, nil); err != nil {
			return err
		}
		if len(m.elem) == 0 {
			continue
		}
		if err := c.SetAddElements(m.set, m.elem); err != nil {
			return err
		}
		if err := c.SetDeleteElements(m.set, m.elem); err != nil {
			return err
		}
	}
	for i, nic := range nics {
		for _, dir := range []Direction{Out, In} {
			ch := c.AddChain(&nftables.Chain{Name: vmChain(vmID, nic, dir), Table: table})
			c.FlushChain(ch)
			c.DelChain(ch)
		}
		ips := &nftables.Set{Table: table, Name: vmIPSet(vmID, nic), KeyType: nftables.TypeIPAddr, ID: uint32(2 + i)}
		if err := c.AddSet(ips, nil); err != nil {
			return err
		}
		c.DelSet(ips)
		for _, k := range counterKinds {
			o := &nftables.NamedObj{Table: table, Name: vmCounter(vmID, nic, k), Type: nftables.ObjTypeCounter, Obj: &expr.Counter{}}
			c.AddObj(o)
			c.DeleteObject(o)
		}
	}
	if f.failBatch != nil && f.failBatch("remove-vm") {
		c.AddRule(&nftables.Rule{Table: table, Chain: &nftables.Chain{Name: chainFromVMForward, Table: table},
			Exprs: []expr.Any{jump("injected-fault-missing-chain")}})
	}
	if err := c.flush(ctx); err != nil {
		return fmt.Errorf("firewall remove-vm %s: batch refused by the kernel: %w", vmID, err)
	}
	return nil
}

// vmNICs are the NICs of the VM that have a chain among names: the primary
// NIC first, then the others by name.
func vmNICs(vmID string, names map[string]bool) []string {
	var out []string
	for name := range names {
		if nic, ok := nicOfChain(vmID, name); ok && !slices.Contains(out, nic) {
			out = append(out, nic)
		}
	}
	slices.SortFunc(out, func(a, b string) int {
		switch {
		case a == b:
			return 0
		case a == PrimaryNIC:
			return -1
		case b == PrimaryNIC:
			return 1
		}
		return strings.Compare(a, b)
	})
	return out
}

// dispatchOf reads the dispatch entries that lead into the VM's chains.
func (c *conn) dispatchOf(vmID string) ([]dispatchEntry, error) {
	fs, _ := dispatchSets()
	elems, err := c.GetSetElements(fs)
	if err != nil {
		return nil, fmt.Errorf("read map %s: %w", fs.Name, err)
	}
	var out []dispatchEntry
	for _, e := range elems {
		chain := jumpTarget(e)
		if nic, ok := nicOfChain(vmID, chain); ok && chain == vmChain(vmID, nic, Out) {
			out = append(out, dispatchEntry{vmID: vmID, nic: nic, tap: ifnameOfKey(e.Key)})
		}
	}
	return out, nil
}

// Prune deletes department chains no VM jumps to any more. The kernel
// refuses to delete a chain in use, so each department is tried in its own
// batch and kept whole when refused.
func (f *Firewall) Prune(ctx context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	names, err := f.chainNames(ctx)
	if err != nil {
		return err
	}
	groups := map[string][]string{}
	for name := range names {
		if id := deptOf(name); id != "" {
			groups[id] = append(groups[id], name)
		}
	}
	for _, id := range sortedKeys(groups) {
		f.tryDelete(ctx, groups[id])
	}
	return ctx.Err()
}

// tryDelete deletes the chains in one batch, or none of them when the
// kernel refuses because some are still jumped to.
func (f *Firewall) tryDelete(ctx context.Context, names []string) {
	if len(names) == 0 {
		return
	}
	c, err := dial(ctx, f.netns, len(names))
	if err != nil {
		return
	}
	defer c.close()
	for _, name := range names {
		c.DelChain(&nftables.Chain{Name: name, Table: table})
	}
	_ = c.flush(ctx) // refused: some VM still jumps there
}

func sortedKeys[V any](m map[string]V) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

// Reset deletes the whole table: every VM's traffic is unfiltered after it.
func (f *Firewall) Reset(ctx context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	c, err := dial(ctx, f.netns, 0)
	if err != nil {
		return err
	}
	defer c.close()
	c.AddTable(table)
	c.DelTable(table)
	return c.flush(ctx)
}

// Counters reads the anti-spoofing drop counters of one NIC of a VM, by
// kind (CounterSpoofMAC, ...), in packets.
func (f *Firewall) Counters(ctx context.Context, vmID, nic string) (map[string]uint64, error) {
	c, err := dial(ctx, f.netns, 0)
	if err != nil {
		return nil, err
	}
	defer c.close()
	out := map[string]uint64{}
	for _, k := range counterKinds {
		name := vmCounter(vmID, nic, k)
		o, err := c.GetObject(&nftables.NamedObj{Table: table, Name: name, Type: nftables.ObjTypeCounter})
		if err != nil {
			return nil, fmt.Errorf("read counter %s: %w", name, err)
		}
		if n, ok := o.(*nftables.NamedObj); ok {
			if ctr, ok := n.Obj.(*expr.Counter); ok {
				out[k] = ctr.Packets
			}
		}
	}
	return out, nil
}

// VMRuleset reads back what the kernel enforces for a VM, in the package's
// textual form: the two chains of each of its NICs, the primary NIC first,
// and every chain they jump to, in the order first met. A VM without
// chains is a NotFound error.
func (f *Firewall) VMRuleset(ctx context.Context, vmID string) (string, error) {
	c, err := dial(ctx, f.netns, 0)
	if err != nil {
		return "", err
	}
	defer c.close()
	// A dump of a missing chain comes back empty, not as an error: look
	// the chains up first.
	exists, err := c.chainNames()
	if err != nil {
		return "", err
	}
	type hop struct{ name, from string }
	var queue []hop
	for _, nic := range vmNICs(vmID, exists) {
		out, in := vmChain(vmID, nic, Out), vmChain(vmID, nic, In)
		if !exists[out] || !exists[in] {
			return "", fmt.Errorf("NIC %s of VM %s has only one of its chains", nic, vmID)
		}
		queue = append(queue, hop{name: out}, hop{name: in})
	}
	if len(queue) == 0 {
		return "", errdefs.NotFound("no firewall chains for VM %s", vmID)
	}
	var b strings.Builder
	seen := map[string]bool{}
	for len(queue) > 0 {
		h := queue[0]
		queue = queue[1:]
		if seen[h.name] {
			continue
		}
		seen[h.name] = true
		ch := &nftables.Chain{Name: h.name, Table: table}
		if !exists[h.name] {
			return "", fmt.Errorf("chain %s jumps to missing chain %s", h.from, h.name)
		}
		rules, err := c.GetRules(table, ch)
		if err != nil {
			return "", fmt.Errorf("read chain %s: %w", h.name, err)
		}
		writeChain(&b, ch, rules)
		for _, r := range rules {
			for _, e := range r.Exprs {
				if v, ok := e.(*expr.Verdict); ok && (v.Kind == expr.VerdictJump || v.Kind == expr.VerdictGoto) {
					queue = append(queue, hop{name: v.Chain, from: h.name})
				}
			}
		}
	}
	return b.String(), nil
}
