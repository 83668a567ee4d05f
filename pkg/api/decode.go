package api

import (
	"encoding/json"
	"errors"
	"io"
	"strings"

	"github.com/infinibay/infinivirt/pkg/errdefs"
)

// Decode reads exactly one JSON value from rd into v, refusing unknown
// fields, as the agent reads every request body. where is the field the
// value sits in, empty for a request body: errors name fields under it, and
// name it (or "body") for the value as a whole. Every error is an
// InvalidArgument naming the field.
func Decode(rd io.Reader, v any, where string) error {
	whole, prefix := "body", ""
	if where != "" {
		whole, prefix = where, where+"."
	}
	dec := json.NewDecoder(rd)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var typeErr *json.UnmarshalTypeError
		var syntaxErr *json.SyntaxError
		switch {
		case errors.As(err, &typeErr) && typeErr.Field != "":
			return errdefs.Invalid(prefix+typeErr.Field, "must be a JSON %s, got %s", typeErr.Type, typeErr.Value)
		case errors.As(err, &typeErr):
			return errdefs.Invalid(whole, "must be a JSON object, got %s", typeErr.Value)
		case errors.As(err, &syntaxErr):
			return errdefs.Invalid(whole, "malformed JSON at byte %d: %v", syntaxErr.Offset, err)
		case strings.HasPrefix(err.Error(), "json: unknown field "):
			field := strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
			return errdefs.Invalid(prefix+field, "is not a known field")
		default:
			return errdefs.Invalid(whole, "malformed JSON: %v", err)
		}
	}
	if _, err := dec.Token(); err != io.EOF {
		return errdefs.Invalid(whole, "must hold exactly one JSON object")
	}
	return nil
}
