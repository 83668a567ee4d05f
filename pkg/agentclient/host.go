package agentclient

import (
	"context"
	"net/http"

	"github.com/infinibay/infinivirt/pkg/api"
)

// HostPCI lists the host's PCI devices and says whether its IOMMU is on.
func (c *Client) HostPCI(ctx context.Context) (api.HostPCI, error) {
	var out api.HostPCI
	err := c.c.Do(ctx, http.MethodGet, "/v1/host/pci", nil, &out)
	return out, err
}

// HostUSB lists the USB devices plugged into the host.
func (c *Client) HostUSB(ctx context.Context) (api.HostUSB, error) {
	var out api.HostUSB
	err := c.c.Do(ctx, http.MethodGet, "/v1/host/usb", nil, &out)
	return out, err
}
