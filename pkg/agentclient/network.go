package agentclient

import (
	"context"
	"net/http"
	"net/url"
	"strconv"

	"github.com/infinibay/infinivirt/pkg/api"
)

// Firewall returns the host's firewall mode and kernel capabilities.
func (c *Client) Firewall(ctx context.Context) (api.FirewallInfo, error) {
	var out api.FirewallInfo
	err := c.c.Do(ctx, http.MethodGet, "/v1/firewall", nil, &out)
	return out, err
}

// Departments lists department firewalls.
func (c *Client) Departments(ctx context.Context) ([]api.Department, error) {
	var out []api.Department
	err := c.c.Do(ctx, http.MethodGet, "/v1/departments", nil, &out)
	return out, err
}

// Department returns one department's firewall.
func (c *Client) Department(ctx context.Context, id string) (api.Department, error) {
	var out api.Department
	err := c.c.Do(ctx, http.MethodGet, "/v1/departments/"+url.PathEscape(id), nil, &out)
	return out, err
}

// PutDepartment creates or replaces a department's policy and rules.
func (c *Client) PutDepartment(ctx context.Context, d api.Department) (api.Department, error) {
	var out api.Department
	err := c.c.Do(ctx, http.MethodPut, "/v1/departments/"+url.PathEscape(d.ID), d, &out)
	return out, err
}

// PutDepartmentRaw sends a department body as is.
func (c *Client) PutDepartmentRaw(ctx context.Context, id string, body []byte) (api.Department, error) {
	var out api.Department
	err := c.c.Do(ctx, http.MethodPut, "/v1/departments/"+url.PathEscape(id), body, &out)
	return out, err
}

// DeleteDepartment removes a department no VM belongs to.
func (c *Client) DeleteDepartment(ctx context.Context, id string) error {
	return c.c.Do(ctx, http.MethodDelete, "/v1/departments/"+url.PathEscape(id), nil, nil)
}

// SetDepartmentPreset turns a preset on or off for a department.
func (c *Client) SetDepartmentPreset(ctx context.Context, id string, p api.FirewallPreset, on bool) (api.Department, error) {
	var out api.Department
	err := c.c.Do(ctx, presetMethod(on), "/v1/departments/"+url.PathEscape(id)+"/presets/"+url.PathEscape(string(p)), nil, &out)
	return out, err
}

// VMFirewall returns a VM's firewall state.
func (c *Client) VMFirewall(ctx context.Context, id string) (api.VMFirewall, error) {
	var out api.VMFirewall
	err := c.c.Do(ctx, http.MethodGet, "/v1/vms/"+url.PathEscape(id)+"/firewall", nil, &out)
	return out, err
}

// PutVMFirewall replaces a VM's department, rules and addresses.
func (c *Client) PutVMFirewall(ctx context.Context, id string, st api.VMFirewall) (api.VMFirewall, error) {
	var out api.VMFirewall
	err := c.c.Do(ctx, http.MethodPut, "/v1/vms/"+url.PathEscape(id)+"/firewall", st, &out)
	return out, err
}

// PutVMFirewallRaw sends a VM firewall body as is.
func (c *Client) PutVMFirewallRaw(ctx context.Context, id string, body []byte) (api.VMFirewall, error) {
	var out api.VMFirewall
	err := c.c.Do(ctx, http.MethodPut, "/v1/vms/"+url.PathEscape(id)+"/firewall", body, &out)
	return out, err
}

// SetVMPreset turns a preset on or off for a VM.
func (c *Client) SetVMPreset(ctx context.Context, id string, p api.FirewallPreset, on bool) (api.VMFirewall, error) {
	var out api.VMFirewall
	err := c.c.Do(ctx, presetMethod(on), "/v1/vms/"+url.PathEscape(id)+"/firewall/presets/"+url.PathEscape(string(p)), nil, &out)
	return out, err
}

// EffectiveFirewall returns the rules a VM's traffic meets and the kernel's view.
func (c *Client) EffectiveFirewall(ctx context.Context, id string) (api.EffectiveFirewall, error) {
	var out api.EffectiveFirewall
	err := c.c.Do(ctx, http.MethodGet, "/v1/vms/"+url.PathEscape(id)+"/firewall/effective", nil, &out)
	return out, err
}

// MoveVM puts a VM's primary NIC on another bridge.
func (c *Client) MoveVM(ctx context.Context, id, bridge string) (api.VM, error) {
	return c.MoveNIC(ctx, id, "", bridge)
}

// MoveNIC puts one of a VM's NICs, by name (net1), on another bridge; an
// empty nic is the primary one.
func (c *Client) MoveNIC(ctx context.Context, id, nic, bridge string) (api.VM, error) {
	var out api.VM
	err := c.c.Do(ctx, http.MethodPut, "/v1/vms/"+url.PathEscape(id)+"/bridge", api.MoveVMRequest{Bridge: bridge, NIC: nic}, &out)
	return out, err
}

// Bridges lists the host's bridges.
func (c *Client) Bridges(ctx context.Context) ([]api.BridgeInfo, error) {
	var out []api.BridgeInfo
	err := c.c.Do(ctx, http.MethodGet, "/v1/bridges", nil, &out)
	return out, err
}

// PutBridge creates a bridge, or brings an existing one to the request.
func (c *Client) PutBridge(ctx context.Context, name string, req api.BridgeRequest) (api.BridgeInfo, error) {
	var out api.BridgeInfo
	err := c.c.Do(ctx, http.MethodPut, "/v1/bridges/"+url.PathEscape(name), req, &out)
	return out, err
}

// DeleteBridge removes a bridge.
func (c *Client) DeleteBridge(ctx context.Context, name string, force bool) error {
	return c.c.Do(ctx, http.MethodDelete, "/v1/bridges/"+url.PathEscape(name)+"?force="+strconv.FormatBool(force), nil, nil)
}

func presetMethod(on bool) string {
	if on {
		return http.MethodPut
	}
	return http.MethodDelete
}
