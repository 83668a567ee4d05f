package agentclient

import (
	"context"
	"net/http"
	"net/url"

	"github.com/infinibay/infinivirt/pkg/api"
)

func cdromsPath(id string) string { return "/v1/vms/" + url.PathEscape(id) + "/cdroms" }

func cdromPath(id, cd string) string { return cdromsPath(id) + "/" + url.PathEscape(cd) }

// CDROMs lists a VM's CD-ROM drives and their media; while it runs, with
// what QEMU has in them.
func (c *Client) CDROMs(ctx context.Context, id string) (api.CDROMs, error) {
	var out api.CDROMs
	err := c.c.Do(ctx, http.MethodGet, cdromsPath(id), nil, &out)
	return out, err
}

// InsertMedium puts the ISO at isoPath into a VM's drive cd, in place of
// what it held; live while the VM runs.
func (c *Client) InsertMedium(ctx context.Context, id, cd, isoPath string) (api.CDROM, error) {
	var out api.CDROM
	err := c.c.Do(ctx, http.MethodPut, cdromPath(id, cd)+"/medium", api.CDROMMedium{ISOPath: isoPath}, &out)
	return out, err
}

// EjectMedium empties a VM's drive cd; live while the VM runs.
func (c *Client) EjectMedium(ctx context.Context, id, cd string) (api.CDROM, error) {
	var out api.CDROM
	err := c.c.Do(ctx, http.MethodDelete, cdromPath(id, cd)+"/medium", nil, &out)
	return out, err
}

// AddCDROM adds a CD-ROM drive to a VM that is off.
func (c *Client) AddCDROM(ctx context.Context, id string, req api.AddCDROMRequest) (api.CDROM, error) {
	var out api.CDROM
	err := c.c.Do(ctx, http.MethodPost, cdromsPath(id), req, &out)
	return out, err
}

// RemoveCDROM removes a CD-ROM drive from a VM that is off.
func (c *Client) RemoveCDROM(ctx context.Context, id, cd string) error {
	return c.c.Do(ctx, http.MethodDelete, cdromPath(id, cd), nil, nil)
}
