package api

import "github.com/infinibay/infinivirt/pkg/errdefs"

// ErrorBody is the JSON body of every non-2xx API answer. Its error is one
// of errdefs' classes, with the request field at fault.
type ErrorBody struct {
	Error *errdefs.Error `json:"error"`
}
