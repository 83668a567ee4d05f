package agentclient

import (
	"context"
	"net/http"
	"net/url"

	"github.com/infinibay/infinivirt/pkg/api"
)

func snapshotsPath(id string) string { return "/v1/vms/" + url.PathEscape(id) + "/snapshots" }

func snapshotPath(id, name string) string { return snapshotsPath(id) + "/" + url.PathEscape(name) }

// Snapshots lists a VM's snapshots, oldest first.
func (c *Client) Snapshots(ctx context.Context, id string) (api.Snapshots, error) {
	var out api.Snapshots
	err := c.c.Do(ctx, http.MethodGet, snapshotsPath(id), nil, &out)
	return out, err
}

// CreateSnapshot takes a snapshot of all of a VM's disks.
func (c *Client) CreateSnapshot(ctx context.Context, id string, req api.CreateSnapshotRequest) (api.Snapshot, error) {
	var out api.Snapshot
	err := c.c.Do(ctx, http.MethodPost, snapshotsPath(id), req, &out)
	return out, err
}

// RevertSnapshot takes a VM's disks back to the snapshot name; force
// powers a running VM off first.
func (c *Client) RevertSnapshot(ctx context.Context, id, name string, force bool) (api.Snapshot, error) {
	p := snapshotPath(id, name) + "/revert"
	if force {
		p += "?force=true"
	}
	var out api.Snapshot
	err := c.c.Do(ctx, http.MethodPost, p, nil, &out)
	return out, err
}

// DeleteSnapshot deletes a VM's snapshot name.
func (c *Client) DeleteSnapshot(ctx context.Context, id, name string) error {
	return c.c.Do(ctx, http.MethodDelete, snapshotPath(id, name), nil, nil)
}
