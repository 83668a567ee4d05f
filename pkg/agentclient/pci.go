package agentclient

import (
	"context"
	"net/http"
	"net/url"

	"github.com/infinibay/infinivirt/pkg/api"
)

func pciPath(id string) string { return "/v1/vms/" + url.PathEscape(id) + "/pci" }

// AttachPCI passes a host PCI device, with its companion functions,
// through to a VM that is off, and returns the VM's new device.
func (c *Client) AttachPCI(ctx context.Context, id string, req api.AttachPCIRequest) (api.Device, error) {
	var out api.Device
	err := c.c.Do(ctx, http.MethodPost, pciPath(id), req, &out)
	return out, err
}

// DetachPCI takes a PCI device off a VM that is off.
func (c *Client) DetachPCI(ctx context.Context, id, dev string) error {
	return c.c.Do(ctx, http.MethodDelete, pciPath(id)+"/"+url.PathEscape(dev), nil, nil)
}
