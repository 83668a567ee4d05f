package agentclient

import (
	"context"
	"net/http"
	"net/url"

	"github.com/infinibay/infinivirt/pkg/api"
)

func disksPath(id string) string { return "/v1/vms/" + url.PathEscape(id) + "/disks" }

// Disks lists a VM's disks with their images' sizes and backing chains.
func (c *Client) Disks(ctx context.Context, id string) (api.Disks, error) {
	var out api.Disks
	err := c.c.Do(ctx, http.MethodGet, disksPath(id), nil, &out)
	return out, err
}

// AddDisk adds a new, empty disk; a running VM gets it at once.
func (c *Client) AddDisk(ctx context.Context, id string, req api.AddDiskRequest) (api.Disk, error) {
	var out api.Disk
	err := c.c.Do(ctx, http.MethodPost, disksPath(id), req, &out)
	return out, err
}

// ResizeDisk grows a disk, or with AllowShrink shrinks one of a VM that is off.
func (c *Client) ResizeDisk(ctx context.Context, id, disk string, req api.ResizeDiskRequest) (api.Disk, error) {
	var out api.Disk
	err := c.c.Do(ctx, http.MethodPatch, disksPath(id)+"/"+url.PathEscape(disk), req, &out)
	return out, err
}

// RemoveDisk takes a disk off a VM; its image is deleted only with deleteImage.
func (c *Client) RemoveDisk(ctx context.Context, id, disk string, deleteImage bool) error {
	p := disksPath(id) + "/" + url.PathEscape(disk)
	if deleteImage {
		p += "?deleteImage=true"
	}
	return c.c.Do(ctx, http.MethodDelete, p, nil, nil)
}
