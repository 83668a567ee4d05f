package unixhttp

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"

	"github.com/infinibay/infinivirt/pkg/api"
	"github.com/infinibay/infinivirt/pkg/errdefs"
)

// WriteError answers with err as an ErrorBody and its class's status code.
func WriteError(w http.ResponseWriter, err error) {
	e := errdefs.As(err)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(e.Code.HTTPStatus())
	_ = json.NewEncoder(w).Encode(api.ErrorBody{Error: e}) // fails only when the client has gone
}

// DecodeError turns a non-2xx answer back into the typed error it carries.
func DecodeError(resp *http.Response) error {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	var body api.ErrorBody
	if json.Unmarshal(b, &body) == nil && body.Error != nil {
		return body.Error
	}
	return errdefs.Internal("answered %s: %s", resp.Status, bytes.TrimSpace(b))
}
