package agentclient

import (
	"context"
	"net/http"
	"net/url"

	"github.com/infinibay/infinivirt/pkg/api"
)

// SetBalloon sets the memory a VM's balloon leaves its guest; a running
// guest gets it at once, a VM that is off at its next start.
func (c *Client) SetBalloon(ctx context.Context, id string, req api.BalloonRequest) (api.VMMemory, error) {
	var out api.VMMemory
	err := c.c.Do(ctx, http.MethodPut, "/v1/vms/"+url.PathEscape(id)+"/balloon", req, &out)
	return out, err
}
