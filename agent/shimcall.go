package agent

import (
	"context"

	"github.com/infinibay/infinivirt/pkg/shimapi"
	"github.com/infinibay/infinivirt/pkg/shimclient"
)

// ShimCall asks a VM's shim one verb of its route table and returns the
// typed answer, so that a new shim verb needs no agent method of its own:
// the API's handler calls this with the verb's route. A VM whose shim does
// not run answers Unavailable, as its console does.
func ShimCall[Req, Resp any](ctx context.Context, a *Agent, id string, route shimapi.Route[Req, Resp], req Req) (Resp, error) {
	rec, err := a.get(id)
	if err != nil {
		var zero Resp
		return zero, err
	}
	ctx, cancel := context.WithTimeout(ctx, shimCallTimeout)
	defer cancel()
	sh := a.shim(rec.id)
	defer sh.Close()
	return shimclient.Call(ctx, sh, route, req)
}
