package firewall

import (
	"context"
	"encoding/binary"
	"fmt"
	"sort"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/infinibay/infinivirt/pkg/api"
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

// ApplyVM installs a VM's chains and dispatch, with the department's
// shared chains it jumps to, in one batch. It is what a VM start or a VM
// rule edit does. Bad input changes nothing in the kernel.
func (f *Firewall) ApplyVM(ctx context.Context, d Department, v VM) error {
	if err := f.mode.CheckVM(v); err != nil {
		return prefixField(err, "vm")
	}
	p, err := Render(f.mode, d, v)
	if err != nil {
		return err
	}
	return f.apply(ctx, "apply-vm", p)
}

// ApplyDepartment re-renders a department and every VM in it in one batch:
// a department edit fanned out to its VMs. vms must be all of the
// department's running VMs. Chains of the department's older versions are
// deleted afterwards where no VM uses them any more.
func (f *Firewall) ApplyDepartment(ctx context.Context, d Department, vms []VM) error {
	p, err := Render(f.mode, d, vms...)
	if err != nil {
		return err
	}
	if err := f.apply(ctx, "apply-department", p); err != nil {
		return err
	}
	f.prune(ctx, deptPrefix(d.ID), p.deptVersions[d.ID])
	return nil
}

func (f *Firewall) apply(ctx context.Context, op string, p *Plan) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	err := f.write(ctx, op, p)
	if err == nil {
		err = f.verify(ctx, p)
	}
	if err == nil {
		return nil
	}
	e := &ApplyError{Op: op, Err: err}
	for _, d := range p.dispatch {
		e.VMs = append(e.VMs, d.vmID)
	}
	e.FailClosed = f.failClosed(ctx, p.dispatch)
	return e
}

func (f *Firewall) write(ctx context.Context, op string, p *Plan) error {
	c, err := dial(ctx, f.netns)
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
	if err := c.flush(ctx); err != nil {
		return fmt.Errorf("batch refused by the kernel: %w", err)
	}
	return nil
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
	for _, name := range p.counters {
		c.AddObj(&nftables.NamedObj{Table: table, Name: name, Type: nftables.ObjTypeCounter, Obj: &expr.Counter{}})
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
		from = append(from, nftables.SetElement{Key: ifnameKey(d.tap), VerdictData: &expr.Verdict{Kind: expr.VerdictJump, Chain: vmChain(d.vmID, Out)}})
		to = append(to, nftables.SetElement{Key: ifnameKey(d.tap), VerdictData: &expr.Verdict{Kind: expr.VerdictJump, Chain: vmChain(d.vmID, In)}})
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

// failClosed puts a drop at the head of each VM's chains, creating the
// table skeleton, the chains and the dispatch entries as needed. Rules
// already in the chains stay below the drop, readable.
func (f *Firewall) failClosed(ctx context.Context, ds []dispatchEntry) error {
	if len(ds) == 0 {
		return nil
	}
	base := &Plan{}
	base.renderBase()
	c, err := dial(context.WithoutCancel(ctx), f.netns)
	if err != nil {
		return err
	}
	defer c.close()
	skeleton := &Plan{base: true, sets: base.sets, chains: base.chains}
	if err := skeleton.queue(c.Conn); err != nil {
		return err
	}
	for _, d := range ds {
		for _, dir := range []Direction{Out, In} {
			ch := c.AddChain(&nftables.Chain{Name: vmChain(d.vmID, dir), Table: table})
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
	c, err := dial(ctx, f.netns)
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

// verdictOfElem decodes the verdict of a map element as read back: the
// library hands over the nested verdict attributes undecoded.
func verdictOfElem(e nftables.SetElement) string {
	if e.VerdictData != nil {
		return verdictText(e.VerdictData)
	}
	ad, err := netlink.NewAttributeDecoder(e.Val)
	if err != nil {
		return fmt.Sprintf("[undecodable %x]", e.Val)
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
	if ad.Err() != nil {
		return fmt.Sprintf("[undecodable %x]", e.Val)
	}
	return verdictText(&v)
}

// RemoveVM deletes a VM's chains, set, counters and dispatch entries in
// one batch. It is idempotent: what is missing is created and deleted in
// the same batch, so the shim's cleanup can run it after any failure.
func (f *Firewall) RemoveVM(ctx context.Context, vmID, tap string) error {
	v := VM{ID: vmID, TAP: tap, MAC: "02:00:00:00:00:01"}
	if err := v.Validate(); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	c, err := dial(ctx, f.netns)
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
	c.AddTable(table)
	fs, ts := dispatchSets()
	fe, te := dispatchElems([]dispatchEntry{{vmID: vmID, tap: tap}})
	var chains []*nftables.Chain
	for _, dir := range []Direction{Out, In} {
		ch := c.AddChain(&nftables.Chain{Name: vmChain(vmID, dir), Table: table})
		c.FlushChain(ch)
		chains = append(chains, ch)
	}
	for _, m := range []struct {
		set  *nftables.Set
		elem []nftables.SetElement
	}{{fs, fe}, {ts, te}} {
		m.set.ID = 1
		if err := c.AddSet(m.set, nil); err != nil {
			return err
		}
		if err := c.SetAddElements(m.set, m.elem); err != nil {
			return err
		}
		if err := c.SetDeleteElements(m.set, m.elem); err != nil {
			return err
		}
	}
	for _, ch := range chains {
		c.DelChain(ch)
	}
	ips := &nftables.Set{Table: table, Name: vmIPSet(vmID), KeyType: nftables.TypeIPAddr, ID: 2}
	if err := c.AddSet(ips, nil); err != nil {
		return err
	}
	c.DelSet(ips)
	for _, k := range counterKinds {
		o := &nftables.NamedObj{Table: table, Name: vmCounter(vmID, k), Type: nftables.ObjTypeCounter, Obj: &expr.Counter{}}
		c.AddObj(o)
		c.DeleteObject(o)
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

// Prune deletes department chains no VM jumps to any more. The kernel
// refuses to delete a chain in use, so each department version is tried
// in its own batch and kept when refused.
func (f *Firewall) Prune(ctx context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.prune(ctx, "dept-", "")
}

// prune tries to delete every department version under prefix except keep.
func (f *Firewall) prune(ctx context.Context, prefix, keep string) error {
	c, err := dial(ctx, f.netns)
	if err != nil {
		return err
	}
	defer c.close()
	chains, err := c.ListChainsOfTableFamily(nftables.TableFamilyBridge)
	if err != nil {
		return fmt.Errorf("list chains: %w", err)
	}
	groups := map[string][]*nftables.Chain{}
	for _, ch := range chains {
		if ch.Table.Name != TableName || !strings.HasPrefix(ch.Name, prefix) {
			continue
		}
		g := deptGroup(ch.Name)
		if g == "" || (keep != "" && strings.HasSuffix(g, "-"+keep)) {
			continue
		}
		groups[g] = append(groups[g], ch)
	}
	for _, g := range sortedKeys(groups) {
		for _, ch := range groups[g] {
			c.DelChain(&nftables.Chain{Name: ch.Name, Table: table})
		}
		_ = c.flush(ctx) // refused: some VM still jumps there
	}
	return ctx.Err()
}

// deptGroup is "dept-<id>-<version>" for a department chain name, or "".
func deptGroup(name string) string {
	// dept-<id>-<version>-<dir>-p<prio>: the last two parts are fixed.
	parts := strings.Split(name, "-")
	if len(parts) < 5 || parts[0] != "dept" {
		return ""
	}
	return strings.Join(parts[:len(parts)-2], "-")
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
	c, err := dial(ctx, f.netns)
	if err != nil {
		return err
	}
	defer c.close()
	c.AddTable(table)
	c.DelTable(table)
	return c.flush(ctx)
}

// Counters reads a VM's anti-spoofing drop counters, by kind
// (CounterSpoofMAC, ...), in packets.
func (f *Firewall) Counters(ctx context.Context, vmID string) (map[string]uint64, error) {
	c, err := dial(ctx, f.netns)
	if err != nil {
		return nil, err
	}
	defer c.close()
	out := map[string]uint64{}
	for _, k := range counterKinds {
		o, err := c.GetObject(&nftables.NamedObj{Table: table, Name: vmCounter(vmID, k), Type: nftables.ObjTypeCounter})
		if err != nil {
			return nil, fmt.Errorf("read counter %s: %w", vmCounter(vmID, k), err)
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
// textual form: its two chains and every chain they jump to, in the order
// first met. A VM without chains is a NotFound error.
func (f *Firewall) VMRuleset(ctx context.Context, vmID string) (string, error) {
	c, err := dial(ctx, f.netns)
	if err != nil {
		return "", err
	}
	defer c.close()
	// A dump of a missing chain comes back empty, not as an error: look
	// the chains up first.
	all, err := c.ListChainsOfTableFamily(nftables.TableFamilyBridge)
	if err != nil {
		return "", fmt.Errorf("list chains: %w", err)
	}
	exists := map[string]bool{}
	for _, ch := range all {
		if ch.Table.Name == TableName {
			exists[ch.Name] = true
		}
	}
	if !exists[vmChain(vmID, Out)] || !exists[vmChain(vmID, In)] {
		return "", api.NotFound("no firewall chains for VM %s", vmID)
	}
	var b strings.Builder
	seen := map[string]bool{}
	queue := []string{vmChain(vmID, Out), vmChain(vmID, In)}
	for len(queue) > 0 {
		name := queue[0]
		queue = queue[1:]
		if seen[name] {
			continue
		}
		seen[name] = true
		ch := &nftables.Chain{Name: name, Table: table}
		if !exists[name] {
			return "", fmt.Errorf("chain %s jumps to missing chain %s", vmChain(vmID, Out), name)
		}
		rules, err := c.GetRules(table, ch)
		if err != nil {
			return "", fmt.Errorf("read chain %s: %w", name, err)
		}
		writeChain(&b, ch, rules)
		for _, r := range rules {
			for _, e := range r.Exprs {
				if v, ok := e.(*expr.Verdict); ok && (v.Kind == expr.VerdictJump || v.Kind == expr.VerdictGoto) {
					queue = append(queue, v.Chain)
				}
			}
		}
	}
	return b.String(), nil
}
