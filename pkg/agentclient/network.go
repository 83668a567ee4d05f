package agentclient

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strconv"

	"github.com/infinibay/infinivirt/pkg/api"
	"github.com/infinibay/infinivirt/pkg/firewall"
)

// VMFirewall mirrors the agent's per-VM firewall state.
type VMFirewall struct {
	Department string           `json:"department"`
	RuleSet    firewall.RuleSet `json:"ruleSet"`
	IPs        []string         `json:"ips,omitempty"`
}

// Firewall returns the host's firewall mode and kernel capabilities.
func (c *Client) Firewall(ctx context.Context) (map[string]any, error) {
	var out map[string]any
	err := c.c.Do(ctx, http.MethodGet, "/v1/firewall", nil, &out)
	return out, err
}

// Departments lists department firewalls.
func (c *Client) Departments(ctx context.Context) ([]firewall.Department, error) {
	var out []firewall.Department
	err := c.c.Do(ctx, http.MethodGet, "/v1/departments", nil, &out)
	return out, err
}

// Department returns one department's firewall.
func (c *Client) Department(ctx context.Context, id string) (firewall.Department, error) {
	var out firewall.Department
	err := c.c.Do(ctx, http.MethodGet, "/v1/departments/"+url.PathEscape(id), nil, &out)
	return out, err
}

// PutDepartment creates or replaces a department's policy and rules.
func (c *Client) PutDepartment(ctx context.Context, d firewall.Department) (firewall.Department, error) {
	var out firewall.Department
	err := c.c.Do(ctx, http.MethodPut, "/v1/departments/"+url.PathEscape(d.ID), d, &out)
	return out, err
}

// PutDepartmentRaw sends a department body as is.
func (c *Client) PutDepartmentRaw(ctx context.Context, id string, body []byte) (firewall.Department, error) {
	var out firewall.Department
	err := c.c.Do(ctx, http.MethodPut, "/v1/departments/"+url.PathEscape(id), body, &out)
	return out, err
}

// DeleteDepartment removes a department no VM belongs to.
func (c *Client) DeleteDepartment(ctx context.Context, id string) error {
	return c.c.Do(ctx, http.MethodDelete, "/v1/departments/"+url.PathEscape(id), nil, nil)
}

// SetDepartmentPreset turns a preset on or off for a department.
func (c *Client) SetDepartmentPreset(ctx context.Context, id string, p firewall.Preset, on bool) (firewall.Department, error) {
	var out firewall.Department
	err := c.c.Do(ctx, presetMethod(on), "/v1/departments/"+url.PathEscape(id)+"/presets/"+url.PathEscape(string(p)), nil, &out)
	return out, err
}

// VMFirewall returns a VM's firewall state.
func (c *Client) VMFirewall(ctx context.Context, id string) (VMFirewall, error) {
	var out VMFirewall
	err := c.c.Do(ctx, http.MethodGet, "/v1/vms/"+url.PathEscape(id)+"/firewall", nil, &out)
	return out, err
}

// PutVMFirewall replaces a VM's department, rules and addresses.
func (c *Client) PutVMFirewall(ctx context.Context, id string, st VMFirewall) (VMFirewall, error) {
	var out VMFirewall
	err := c.c.Do(ctx, http.MethodPut, "/v1/vms/"+url.PathEscape(id)+"/firewall", st, &out)
	return out, err
}

// PutVMFirewallRaw sends a VM firewall body as is.
func (c *Client) PutVMFirewallRaw(ctx context.Context, id string, body []byte) (VMFirewall, error) {
	var out VMFirewall
	err := c.c.Do(ctx, http.MethodPut, "/v1/vms/"+url.PathEscape(id)+"/firewall", body, &out)
	return out, err
}

// SetVMPreset turns a preset on or off for a VM.
func (c *Client) SetVMPreset(ctx context.Context, id string, p firewall.Preset, on bool) (VMFirewall, error) {
	var out VMFirewall
	err := c.c.Do(ctx, presetMethod(on), "/v1/vms/"+url.PathEscape(id)+"/firewall/presets/"+url.PathEscape(string(p)), nil, &out)
	return out, err
}

// EffectiveFirewall returns the rules a VM's traffic meets and the kernel's view.
func (c *Client) EffectiveFirewall(ctx context.Context, id string) (json.RawMessage, error) {
	var out json.RawMessage
	err := c.c.Do(ctx, http.MethodGet, "/v1/vms/"+url.PathEscape(id)+"/firewall/effective", nil, &out)
	return out, err
}

// MoveVM puts a VM on another bridge.
func (c *Client) MoveVM(ctx context.Context, id, bridge string) (api.VM, error) {
	var out api.VM
	err := c.c.Do(ctx, http.MethodPut, "/v1/vms/"+url.PathEscape(id)+"/bridge", map[string]string{"bridge": bridge}, &out)
	return out, err
}

// Bridges lists the host's bridges.
func (c *Client) Bridges(ctx context.Context) ([]map[string]any, error) {
	var out []map[string]any
	err := c.c.Do(ctx, http.MethodGet, "/v1/bridges", nil, &out)
	return out, err
}

// PutBridge creates or adopts a bridge; body holds mac, mtu and addresses.
func (c *Client) PutBridge(ctx context.Context, name string, body map[string]any) (map[string]any, error) {
	var out map[string]any
	err := c.c.Do(ctx, http.MethodPut, "/v1/bridges/"+url.PathEscape(name), body, &out)
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
