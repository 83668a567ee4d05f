package agentclient

import (
	"context"
	"net/http"
	"net/url"

	"github.com/infinibay/infinivirt/pkg/api"
)

func usbPath(id string) string { return "/v1/vms/" + url.PathEscape(id) + "/usb" }

// AttachUSB passes a host USB device through to a VM, live when it runs,
// and returns the VM's new device.
func (c *Client) AttachUSB(ctx context.Context, id string, req api.AttachUSBRequest) (api.Device, error) {
	var out api.Device
	err := c.c.Do(ctx, http.MethodPost, usbPath(id), req, &out)
	return out, err
}

// DetachUSB takes a USB device off a VM, unplugging it while it runs.
func (c *Client) DetachUSB(ctx context.Context, id, dev string) error {
	return c.c.Do(ctx, http.MethodDelete, usbPath(id)+"/"+url.PathEscape(dev), nil, nil)
}
