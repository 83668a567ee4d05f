package httpapi

import (
	"encoding/json"
	"net"
	"net/netip"
	"reflect"
	"strings"
	"testing"

	"github.com/infinibay/infinivirt/agent"
	"github.com/infinibay/infinivirt/pkg/api"
	"github.com/infinibay/infinivirt/pkg/firewall"
	"github.com/infinibay/infinivirt/pkg/netdev"
	"github.com/infinibay/infinivirt/pkg/shimapi"
	"github.com/infinibay/infinivirt/pkg/vmspec"
)

// fill sets every exported field of v to a value of its own, so that a
// conversion that drops or mixes up a field shows in the JSON.
func fill(v reflect.Value, n *int) {
	*n++
	switch v.Interface().(type) {
	case netip.Addr:
		v.Set(reflect.ValueOf(netip.AddrFrom4([4]byte{10, 0, 0, byte(*n)})))
		return
	case netip.Prefix:
		v.Set(reflect.ValueOf(netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(*n), 0, 0}), 16)))
		return
	case net.HardwareAddr:
		v.Set(reflect.ValueOf(net.HardwareAddr{0x52, 0x54, 0, 0, 0, byte(*n)}))
		return
	}
	switch v.Kind() {
	case reflect.String:
		v.SetString("s" + strings.Repeat("x", *n))
	case reflect.Bool:
		v.SetBool(true)
	case reflect.Int, reflect.Int64, reflect.Int32:
		v.SetInt(int64(*n))
	case reflect.Uint64, reflect.Uint32, reflect.Uint:
		v.SetUint(uint64(*n))
	case reflect.Pointer:
		v.Set(reflect.New(v.Type().Elem()))
		fill(v.Elem(), n)
	case reflect.Slice:
		v.Set(reflect.MakeSlice(v.Type(), 2, 2))
		fill(v.Index(0), n)
		fill(v.Index(1), n)
	case reflect.Map:
		v.Set(reflect.MakeMap(v.Type()))
		k, e := reflect.New(v.Type().Key()).Elem(), reflect.New(v.Type().Elem()).Elem()
		fill(k, n)
		fill(e, n)
		v.SetMapIndex(k, e)
	case reflect.Struct:
		for i := range v.NumField() {
			if v.Type().Field(i).IsExported() {
				fill(v.Field(i), n)
			}
		}
	}
}

func filled[T any]() T {
	var v T
	n := 0
	fill(reflect.ValueOf(&v).Elem(), &n)
	return v
}

// sameJSON checks that a and b have one JSON form, and that b's type takes
// a's form with no field left over.
func sameJSON(t *testing.T, name string, a, b any) {
	t.Helper()
	ja, err := json.Marshal(a)
	if err != nil {
		t.Fatal(err)
	}
	jb, err := json.Marshal(b)
	if err != nil {
		t.Fatal(err)
	}
	var va, vb any
	json.Unmarshal(ja, &va)
	json.Unmarshal(jb, &vb)
	if !reflect.DeepEqual(va, vb) {
		t.Errorf("%s: the two forms differ:\n%s\n%s", name, ja, jb)
	}
	dec := json.NewDecoder(strings.NewReader(string(ja)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(reflect.New(reflect.TypeOf(b)).Interface()); err != nil {
		t.Errorf("%s: %T does not take %T's form: %v", name, b, a, err)
	}
}

// TestWireTypesMatchTheLibraries: every field the libraries answer with
// reaches the wire, and every field a request carries reaches the agent.
func TestWireTypesMatchTheLibraries(t *testing.T) {
	rule := filled[firewall.Rule]()
	sameJSON(t, "rule", rule, fromRule(rule))
	apiRule := filled[api.FirewallRule]()
	sameJSON(t, "rule request", apiRule, toRule(apiRule))

	dept := filled[firewall.Department]()
	sameJSON(t, "department", dept, fromDepartment(dept))
	apiDept := filled[api.Department]()
	sameJSON(t, "department request", apiDept, toDepartment(apiDept))

	vmfw := filled[vmspec.VMFirewall]()
	sameJSON(t, "VM firewall", vmfw, fromVMFirewall(vmfw))
	apiVMFW := filled[api.VMFirewall]()
	sameJSON(t, "VM firewall request", apiVMFW, toVMFirewall(apiVMFW))

	info := filled[agent.FirewallInfo]()
	sameJSON(t, "firewall info", info, fromFirewallInfo(info))
	eff := filled[agent.EffectiveFirewall]()
	sameJSON(t, "effective firewall", eff, fromEffective(eff))

	bridge := filled[netdev.BridgeInfo]()
	sameJSON(t, "bridge", bridge, fromBridge(bridge))
	req := filled[api.BridgeRequest]()
	sameJSON(t, "bridge request", req, toBridgeRequest(req))
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
	json.Unmarshal([]byte(`{}`), &r)
	var ar api.FirewallRule
	json.Unmarshal([]byte(`{}`), &ar)
	if r.Priority != ar.Priority {
		t.Errorf("an absent priority is %d in firewall, %d on the wire", r.Priority, ar.Priority)
	}
}
