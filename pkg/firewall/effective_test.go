package firewall

import (
	"fmt"
	"strings"
	"testing"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
)

func entriesOf(origin Origin, rules ...Rule) []Entry {
	var s []sourced
	for _, r := range rules {
		s = append(s, sourced{r, origin})
	}
	return directEntries(s)
}

func idsOf(es []Entry) string {
	var s []string
	for _, e := range es {
		id := e.Rule.ID + "/" + string(e.Dir)
		if e.Reply {
			id += "/reply"
		}
		s = append(s, id)
	}
	return strings.Join(s, " ")
}

func TestApplyOverrides(t *testing.T) {
	tcp := func(id string, d Direction, port int) Rule {
		r := rule(id, Drop, d, TCP)
		r.DstPortStart = port
		return r
	}
	over := func(r Rule) Rule { r.Action, r.OverridesDept, r.ID = Accept, true, "vm-"+r.ID; return r }
	withAddr := func(r Rule, addr, mask string) Rule { r.SrcIPAddr, r.SrcIPMask = addr, mask; return r }
	ssh := tcp("ssh", In, 22)
	cases := []struct {
		name       string
		dept, vm   []Rule
		kept, gone string
	}{
		{"same traffic is replaced", []Rule{ssh, tcp("web", In, 80)}, []Rule{over(ssh)}, "web/IN", "ssh/IN"},
		{"without overridesDept nothing goes", []Rule{ssh}, []Rule{func() Rule { r := over(ssh); r.OverridesDept = false; return r }()},
			"ssh/IN", ""},
		{"another port is other traffic", []Rule{ssh}, []Rule{over(tcp("x", In, 23))}, "ssh/IN", ""},
		{"another direction is other traffic", []Rule{ssh}, []Rule{over(tcp("ssh", Out, 22))}, "ssh/IN", ""},
		{"another protocol is other traffic", []Rule{ssh}, []Rule{func() Rule { r := over(ssh); r.Protocol = UDP; return r }()}, "ssh/IN", ""},
		{"all is not tcp", []Rule{ssh}, []Rule{func() Rule { r := over(ssh); r.Protocol, r.DstPortStart = All, 0; return r }()}, "ssh/IN", ""},
		{"a port range is not its first port", []Rule{ssh}, []Rule{func() Rule { r := over(ssh); r.DstPortEnd = 23; return r }()}, "ssh/IN", ""},
		{"an explicit end equal to start is the same port", []Rule{ssh}, []Rule{func() Rule { r := over(ssh); r.DstPortEnd = 22; return r }()}, "", "ssh/IN"},
		{"the same network written two ways", []Rule{withAddr(ssh, "10.0.0.7", "255.255.255.0")}, []Rule{over(withAddr(ssh, "10.0.0.0/24", ""))}, "", "ssh/IN"},
		{"a narrower network is other traffic", []Rule{withAddr(ssh, "10.0.0.0", "24")}, []Rule{over(withAddr(ssh, "10.0.0.0", "25"))}, "ssh/IN", ""},
		{"connection state does not count", []Rule{ssh}, []Rule{func() Rule {
			r := over(ssh)
			r.ConnectionState = &ConnectionState{New: true}
			return r
		}()}, "", "ssh/IN"},
		{"an IN override removes only the IN half of an INOUT rule", []Rule{tcp("both", InOut, 22)}, []Rule{over(tcp("both", In, 22))},
			"both/OUT", "both/IN"},
		{"an INOUT override removes both halves", []Rule{tcp("both", InOut, 22)}, []Rule{over(tcp("both", InOut, 22))}, "", "both/IN both/OUT"},
		{"the established rule stays", []Rule{establishedRule()}, []Rule{over(func() Rule {
			r := establishedRule()
			r.ConnectionState = nil
			return r
		}())}, EstablishedRuleID + "/IN " + EstablishedRuleID + "/OUT", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			kept, gone := ApplyOverrides(entriesOf(FromDepartment, c.dept...), entriesOf(FromVM, c.vm...))
			var goneIDs []string
			for _, o := range gone {
				goneIDs = append(goneIDs, o.Department.ID+"/"+string(o.Dir))
				if !o.By.OverridesDept {
					t.Errorf("overridden by a rule without overridesDept: %+v", o.By)
				}
			}
			if got := idsOf(kept); got != c.kept {
				t.Errorf("kept %q, want %q", got, c.kept)
			}
			if got := strings.Join(goneIDs, " "); got != c.gone {
				t.Errorf("overridden %q, want %q", got, c.gone)
			}
		})
	}
}

func TestComputeEffectiveOrder(t *testing.T) {
	d := Department{ID: "d", Policy: DepartmentPolicy{BlockAll, AllowInternet}, RuleSet: RuleSet{
		Rules:   []Rule{{ID: "d500", Action: Drop, Direction: In, Priority: 500, Protocol: ICMP}, {ID: "d10", Action: Drop, Direction: In, Priority: 10, Protocol: UDP}},
		Presets: []Preset{PresetSSH},
	}}
	v := vmA(Rule{ID: "v500", Action: Accept, Direction: In, Priority: 500, Protocol: ICMP},
		Rule{ID: "v-http-out", Action: Accept, Direction: Out, Priority: 200, Protocol: TCP, DstPortStart: 8080})
	v.RuleSet.Presets = []Preset{PresetRDP}

	eff := ComputeEffective(d, v, false)
	if got, want := idsOf(eff.In), "d10/IN system:established/IN v500/IN d500/IN preset:rdp/IN preset:ssh/IN"; got != want {
		t.Errorf("stateful IN order:\n got %s\nwant %s", got, want)
	}
	if got, want := idsOf(eff.Out), "system:established/OUT default:dns-udp/OUT default:dns-tcp/OUT default:http/OUT default:https/OUT default:ntp/OUT v-http-out/OUT"; got != want {
		t.Errorf("stateful OUT order:\n got %s\nwant %s", got, want)
	}
	if eff.Terminal != Drop {
		t.Errorf("BLOCK_ALL terminal %s", eff.Terminal)
	}

	eff = ComputeEffective(d, v, true)
	if got, want := idsOf(eff.In), "d10/IN v-http-out/IN/reply default:dns-udp/IN/reply default:dns-tcp/IN/reply default:http/IN/reply "+
		"default:https/IN/reply default:ntp/IN/reply v500/IN d500/IN preset:rdp/IN preset:ssh/IN"; got != want {
		t.Errorf("stateless IN order:\n got %s\nwant %s", got, want)
	}
	if got, want := idsOf(eff.Out), "v500/OUT/reply preset:rdp/OUT/reply preset:ssh/OUT/reply default:dns-udp/OUT default:dns-tcp/OUT "+
		"default:http/OUT default:https/OUT default:ntp/OUT v-http-out/OUT"; got != want {
		t.Errorf("stateless OUT order:\n got %s\nwant %s", got, want)
	}
}

// TestRenderedChainsFollowTheEffectiveOrder flattens each VM chain (jumps
// replaced by the department chain they enter) and checks it is exactly
// the effective list rendered one entry after another: sharing department
// chains and inlining overridden bands change nothing about the order.
func TestRenderedChainsFollowTheEffectiveOrder(t *testing.T) {
	r := func(id string, a Action, d Direction, p Protocol, prio, port int, over bool) Rule {
		x := Rule{ID: id, Action: a, Direction: d, Priority: prio, Protocol: p, DstPortStart: port, OverridesDept: over}
		return x
	}
	d := Department{ID: "d", Policy: DepartmentPolicy{AllowAll, BlockDatabases}, RuleSet: RuleSet{
		Rules: []Rule{
			r("a", Drop, In, TCP, 300, 22, false), r("b", Accept, InOut, TCP, 300, 8080, false),
			r("c", Drop, Out, UDP, 700, 53, false), r("e", Accept, Out, ICMP, 700, 0, false),
		},
		Presets: []Preset{PresetHTTP},
	}}
	vms := []VM{
		vmA(),
		vmA(r("x", Accept, In, TCP, 300, 22, true), r("y", Drop, In, TCP, 50, 3306, false)),
		vmA(r("x", Accept, In, TCP, 900, 5432, true), r("z", Accept, Out, UDP, 700, 53, true), r("w", Drop, InOut, TCP, 300, 8080, true)),
	}
	for _, m := range []Mode{stateless, everything} {
		for i, v := range vms {
			t.Run(fmt.Sprintf("stateless=%v/vm%d", m.Stateless, i), func(t *testing.T) {
				p, err := Render(m, d, v)
				if err != nil {
					t.Fatal(err)
				}
				chains := map[string]*planChain{}
				for _, pc := range p.chains {
					chains[pc.chain.Name] = pc
				}
				eff := ComputeEffective(d, v, m.Stateless)
				for dir, entries := range map[Direction][]Entry{In: eff.In, Out: eff.Out} {
					want := &planChain{chain: &nftables.Chain{Name: "want"}}
					for _, e := range entries {
						want.addEntry(e, m)
					}
					top := chains[vmChain(v.ID, PrimaryNIC, dir)].rules
					got := flatten(chains, top[:len(top)-1]) // without the terminal rule
					if w, g := rulesText(want.rules), rulesText(got); w != g {
						t.Errorf("%s chain, flattened:\n%s\nwant:\n%s", dir, g, w)
					}
				}
			})
		}
	}
}

// flatten splices jumped-to chains in place and drops the guards.
func flatten(chains map[string]*planChain, rules []*nftables.Rule) []*nftables.Rule {
	var out []*nftables.Rule
	for _, r := range rules {
		if len(r.Exprs) == 1 {
			if v, ok := r.Exprs[0].(*expr.Verdict); ok && v.Kind == expr.VerdictJump {
				out = append(out, flatten(chains, chains[v.Chain].rules)...)
				continue
			}
		}
		c, _ := userdata.GetString(r.UserData, userdata.TypeComment)
		if strings.HasPrefix(c, "guard:") {
			continue
		}
		out = append(out, r)
	}
	return out
}
