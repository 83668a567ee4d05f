package qmp

import (
	"context"
	"fmt"
)

// EventDeviceDeleted is sent once the guest released a device that
// device_del asked it to give up (and again for its virtio backend).
const EventDeviceDeleted = "DEVICE_DELETED"

// DeviceDeletedData is the data of DEVICE_DELETED. Device is empty for a
// device without an id (a virtio backend).
type DeviceDeletedData struct {
	Device string `json:"device"`
	Path   string `json:"path"`
}

// DeviceDeleted decodes the data of a DEVICE_DELETED event.
func (e Event) DeviceDeleted() (DeviceDeletedData, error) {
	var d DeviceDeletedData
	if e.Name != EventDeviceDeleted {
		return d, fmt.Errorf("qmp: event %s is not %s", e.Name, EventDeviceDeleted)
	}
	err := e.DecodeData(&d)
	return d, err
}

// DeviceDel asks the guest to release the device with id; DEVICE_DELETED
// says when it did.
func (c *Client) DeviceDel(ctx context.Context, id string) error {
	return c.Execute(ctx, "device_del", struct {
		ID string `json:"id"`
	}{id}, nil)
}

// BlockdevDel removes a block node that nothing uses any more.
func (c *Client) BlockdevDel(ctx context.Context, nodeName string) error {
	return c.Execute(ctx, "blockdev-del", struct {
		NodeName string `json:"node-name"`
	}{nodeName}, nil)
}

// BlockResize sets the virtual size of the image under the block node
// nodeName; the guest sees the new size at once.
func (c *Client) BlockResize(ctx context.Context, nodeName string, sizeBytes int64) error {
	return c.Execute(ctx, "block_resize", struct {
		NodeName string `json:"node-name"`
		Size     int64  `json:"size"`
	}{nodeName, sizeBytes}, nil)
}

// ObjectProperty is one property of a QOM object, as qom-list names it.
type ObjectProperty struct {
	Name string `json:"name"`
	Type string `json:"type"`
}

// QOMList lists the properties of the QOM object at path; a bus has a
// "child[N]" link for each device on it.
func (c *Client) QOMList(ctx context.Context, path string) ([]ObjectProperty, error) {
	var props []ObjectProperty
	err := c.Execute(ctx, "qom-list", struct {
		Path string `json:"path"`
	}{path}, &props)
	return props, err
}

// ImageInfo is the image under a block device, as query-block reports
// it, with its backing chain.
type ImageInfo struct {
	Filename    string     `json:"filename"`
	Format      string     `json:"format"`
	VirtualSize int64      `json:"virtual-size"`
	ActualSize  int64      `json:"actual-size"`
	Backing     *ImageInfo `json:"backing-image,omitempty"`
}

// BlockInfo is one block device of query-block.
type BlockInfo struct {
	Device    string `json:"device"`
	QDev      string `json:"qdev"`
	Removable bool   `json:"removable"`
	TrayOpen  bool   `json:"tray_open"`
	Inserted  *struct {
		NodeName string    `json:"node-name"`
		File     string    `json:"file"`
		Driver   string    `json:"drv"`
		ReadOnly bool      `json:"ro"`
		Image    ImageInfo `json:"image"`
	} `json:"inserted,omitempty"`
}

// QueryBlock lists the VM's block devices with their media and images.
func (c *Client) QueryBlock(ctx context.Context) ([]BlockInfo, error) {
	var infos []BlockInfo
	err := c.Execute(ctx, "query-block", nil, &infos)
	return infos, err
}

// QOMGet reads property prop of the QOM object at path into out.
func (c *Client) QOMGet(ctx context.Context, path, prop string, out any) error {
	return c.Execute(ctx, "qom-get", struct {
		Path     string `json:"path"`
		Property string `json:"property"`
	}{path, prop}, out)
}

// HumanMonitor runs an HMP command (info usb) and answers its text.
func (c *Client) HumanMonitor(ctx context.Context, command string) (string, error) {
	var out string
	err := c.Execute(ctx, "human-monitor-command", struct {
		CommandLine string `json:"command-line"`
	}{command}, &out)
	return out, err
}
