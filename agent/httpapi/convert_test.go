package httpapi

import (
	"encoding/json"
	"reflect"
	"testing"

	"github.com/infinibay/infinivirt/agent"
	"github.com/infinibay/infinivirt/agent/internal/wiretest"
	"github.com/infinibay/infinivirt/pkg/api"
	"github.com/infinibay/infinivirt/pkg/firewall"
	"github.com/infinibay/infinivirt/pkg/netdev"
	"github.com/infinibay/infinivirt/pkg/shimapi"
	"github.com/infinibay/infinivirt/pkg/vmspec"
)

// TestWireTypesMatchTheLibraries: every field the libraries answer with
// reaches the wire, and every field a request carries reaches the agent.
func TestWireTypesMatchTheLibraries(t *testing.T) {
	rule := wiretest.Filled[firewall.Rule]()
	wiretest.SameJSON(t, "rule", rule, fromRule(rule))
	apiRule := wiretest.Filled[api.FirewallRule]()
	wiretest.SameJSON(t, "rule request", apiRule, toRule(apiRule))

	dept := wiretest.Filled[firewall.Department]()
	wiretest.SameJSON(t, "department", dept, fromDepartment(dept))
	apiDept := wiretest.Filled[api.Department]()
	wiretest.SameJSON(t, "department request", apiDept, toDepartment(apiDept))

	vmfw := wiretest.Filled[vmspec.VMFirewall]()
	wiretest.SameJSON(t, "VM firewall", vmfw, fromVMFirewall(vmfw))
	apiVMFW := wiretest.Filled[api.VMFirewall]()
	wiretest.SameJSON(t, "VM firewall request", apiVMFW, toVMFirewall(apiVMFW))

	info := wiretest.Filled[agent.FirewallInfo]()
	wiretest.SameJSON(t, "firewall info", info, fromFirewallInfo(info))
	eff := wiretest.Filled[agent.EffectiveFirewall]()
	wiretest.SameJSON(t, "effective firewall", eff, fromEffective(eff))

	bridge := wiretest.Filled[netdev.BridgeInfo]()
	wiretest.SameJSON(t, "bridge", bridge, fromBridge(bridge))
	req := wiretest.Filled[api.BridgeRequest]()
	wiretest.SameJSON(t, "bridge request", req, toBridgeRequest(req))
}

// TestEnumsMatchTheLibraries: the wire's enums are the libraries' values.
func TestEnumsMatchTheLibraries(t *testing.T) {
	var presets []firewall.Preset
	for _, p := range api.FirewallPresets {
		presets = append(presets, firewall.Preset(p))
	}
	if !reflect.DeepEqual(presets, firewall.Presets()) {
		t.Errorf("presets: api %v, firewall %v", api.FirewallPresets, firewall.Presets())
	}
	for _, m := range [][2]string{
		{string(api.FirewallOff), string(shimapi.FirewallOff)},
		{string(api.FirewallConntrack), string(shimapi.FirewallConntrack)},
		{string(api.FirewallStateless), string(shimapi.FirewallStateless)},
		{string(api.FirewallAccept), string(firewall.Accept)}, {string(api.FirewallDrop), string(firewall.Drop)},
		{string(api.FirewallReject), string(firewall.Reject)},
		{string(api.FirewallIn), string(firewall.In)}, {string(api.FirewallOut), string(firewall.Out)},
		{string(api.FirewallInOut), string(firewall.InOut)},
		{string(api.FirewallTCP), string(firewall.TCP)}, {string(api.FirewallUDP), string(firewall.UDP)},
		{string(api.FirewallICMP), string(firewall.ICMP)}, {string(api.FirewallAll), string(firewall.All)},
		{string(api.PolicyBlockAll), string(firewall.BlockAll)}, {string(api.PolicyAllowAll), string(firewall.AllowAll)},
		{string(api.ConfigAllowInternet), string(firewall.AllowInternet)},
		{string(api.ConfigAllowOutbound), string(firewall.AllowOutbound)},
		{string(api.ConfigBlockAll), string(firewall.BlockAllTraffic)},
		{string(api.ConfigBlockSSH), string(firewall.BlockSSH)}, {string(api.ConfigBlockSMB), string(firewall.BlockSMB)},
		{string(api.ConfigBlockDatabases), string(firewall.BlockDatabases)}, {string(api.ConfigNone), string(firewall.NoDefaults)},
		{string(api.OriginVM), string(firewall.FromVM)}, {string(api.OriginVMPreset), string(firewall.FromVMPreset)},
		{string(api.OriginDepartment), string(firewall.FromDepartment)},
		{string(api.OriginDepartmentPreset), string(firewall.FromDepartmentPreset)},
		{string(api.OriginPolicy), string(firewall.FromPolicy)},
	} {
		if m[0] != m[1] {
			t.Errorf("the wire says %q where the library says %q", m[0], m[1])
		}
	}
	if api.FirewallDefaultPriority != firewall.DefaultPriority || api.DefaultDepartment != vmspec.DefaultDepartment {
		t.Error("default priority or department differ")
	}
	var r firewall.Rule
	if err := json.Unmarshal([]byte(`{}`), &r); err != nil {
		t.Fatal(err)
	}
	var ar api.FirewallRule
	if err := json.Unmarshal([]byte(`{}`), &ar); err != nil {
		t.Fatal(err)
	}
	if r.Priority != ar.Priority {
		t.Errorf("an absent priority is %d in firewall, %d on the wire", r.Priority, ar.Priority)
	}
}
