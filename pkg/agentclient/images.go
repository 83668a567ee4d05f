package agentclient

import (
	"context"
	"net/http"
	"net/url"
	"strconv"

	"github.com/infinibay/infinivirt/pkg/api"
)

func imagePath(name string) string { return "/v1/images/" + url.PathEscape(name) }

// Images lists the store's images, the disks backed by each, and the
// imports under way or failed.
func (c *Client) Images(ctx context.Context) (api.Images, error) {
	var out api.Images
	err := c.c.Do(ctx, http.MethodGet, "/v1/images", nil, &out)
	return out, err
}

// Image is one image of the store, or the state and progress of its import.
func (c *Client) Image(ctx context.Context, name string) (api.Image, error) {
	var out api.Image
	err := c.c.Do(ctx, http.MethodGet, imagePath(name), nil, &out)
	return out, err
}

// ImportImage imports an image file into the store. Without wait it
// answers once the import began (the image importing; follow it with
// Image), with wait once it ended.
func (c *Client) ImportImage(ctx context.Context, req api.ImportImageRequest, wait bool) (api.Image, error) {
	var out api.Image
	err := c.c.Do(ctx, http.MethodPost, "/v1/images?wait="+strconv.FormatBool(wait), req, &out)
	return out, err
}

// DeleteImage deletes an image; refused while any disk is backed by it.
func (c *Client) DeleteImage(ctx context.Context, name string) error {
	return c.c.Do(ctx, http.MethodDelete, imagePath(name), nil, nil)
}

// CaptureDiskImage turns the disk of a VM that is off into a new store
// image named name, flattened; it answers as ImportImage does.
func (c *Client) CaptureDiskImage(ctx context.Context, id, disk, name string, wait bool) (api.Image, error) {
	var out api.Image
	p := "/v1/vms/" + url.PathEscape(id) + "/disks/" + url.PathEscape(disk) + "/image?wait=" + strconv.FormatBool(wait)
	err := c.c.Do(ctx, http.MethodPost, p, api.CaptureImageRequest{Name: name}, &out)
	return out, err
}
