package api

import (
	"bytes"
	"encoding"
	"encoding/json"
	"errors"
	"io"
	"reflect"
	"strings"

	"github.com/infinibay/infinivirt/pkg/errdefs"
)

// Decode reads exactly one JSON value from rd into v, refusing unknown
// fields at any depth, as the agent reads every request body. where is the
// field the value sits in, empty for a request body: errors name fields
// under it, and name it (or "body") for the value as a whole. Every error is
// an InvalidArgument naming the field by its path of JSON names, such as
// install.config.hostname.
func Decode(rd io.Reader, v any, where string) error {
	whole, prefix := "body", ""
	if where != "" {
		whole, prefix = where, where+"."
	}
	data, err := io.ReadAll(rd)
	if err != nil {
		return errdefs.Invalid(whole, "unreadable: %v", err)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
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
			// encoding/json names only the key; the path says where it is.
			field := strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
			if path, ok := unknownField(data, reflect.TypeOf(v)); ok {
				field = path
			}
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

// unknownField finds the first object key of data, in document order (the
// order encoding/json reports errors in), that t has no field for, and
// returns its path of JSON names, dot-separated as encoding/json names the
// fields of type errors (list indices and map keys left out).
func unknownField(data []byte, t reflect.Type) (string, bool) {
	if t == nil {
		return "", false
	}
	var path []string
	found, err := findUnknown(json.NewDecoder(bytes.NewReader(data)), t, &path)
	if err != nil || !found {
		return "", false
	}
	return strings.Join(path, "."), true
}

var (
	jsonUnmarshaler = reflect.TypeFor[json.Unmarshaler]()
	textUnmarshaler = reflect.TypeFor[encoding.TextUnmarshaler]()
)

// findUnknown reads the next value of dec, as t takes it, and reports
// whether it holds an unknown key, leaving path at that key.
func findUnknown(dec *json.Decoder, t reflect.Type, path *[]string) (bool, error) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if reflect.PointerTo(t).Implements(jsonUnmarshaler) || reflect.PointerTo(t).Implements(textUnmarshaler) {
		var skip json.RawMessage // it decodes itself
		return false, dec.Decode(&skip)
	}
	tok, err := dec.Token()
	if err != nil {
		return false, err
	}
	switch {
	case tok == json.Delim('{') && t.Kind() == reflect.Struct:
		for dec.More() {
			key, err := dec.Token()
			if err != nil {
				return false, err
			}
			name, ft, ok := jsonField(t, key.(string))
			*path = append(*path, name)
			if !ok {
				return true, nil
			}
			if found, err := findUnknown(dec, ft, path); found || err != nil {
				return found, err
			}
			*path = (*path)[:len(*path)-1]
		}
		_, err = dec.Token()
		return false, err
	case tok == json.Delim('{') && t.Kind() == reflect.Map:
		for dec.More() {
			if _, err := dec.Token(); err != nil {
				return false, err
			}
			if found, err := findUnknown(dec, t.Elem(), path); found || err != nil {
				return found, err
			}
		}
		_, err = dec.Token()
		return false, err
	case tok == json.Delim('[') && (t.Kind() == reflect.Slice || t.Kind() == reflect.Array):
		for dec.More() {
			if found, err := findUnknown(dec, t.Elem(), path); found || err != nil {
				return found, err
			}
		}
		_, err = dec.Token()
		return false, err
	case tok == json.Delim('{') || tok == json.Delim('['):
		return false, skipRest(dec) // an any, or a type error reported elsewhere
	}
	return false, nil
}

// jsonField finds the field of struct t that takes key, as encoding/json
// matches them (the exact name, else any case), embedded structs included.
// It returns the field's JSON name, or key when there is none.
func jsonField(t reflect.Type, key string) (string, reflect.Type, bool) {
	var foldName string
	var foldType reflect.Type
	var walk func(t reflect.Type) bool
	walk = func(t reflect.Type) bool {
		for i := range t.NumField() {
			f := t.Field(i)
			tag := f.Tag.Get("json")
			if tag == "-" || (!f.IsExported() && !f.Anonymous) {
				continue
			}
			name, _, _ := strings.Cut(tag, ",")
			if ft := f.Type; f.Anonymous && name == "" {
				for ft.Kind() == reflect.Pointer {
					ft = ft.Elem()
				}
				if ft.Kind() == reflect.Struct {
					if walk(ft) {
						return true
					}
					continue
				}
			}
			if !f.IsExported() {
				continue
			}
			if name == "" {
				name = f.Name
			}
			if name == key {
				foldName, foldType = name, f.Type
				return true
			}
			if foldType == nil && strings.EqualFold(name, key) {
				foldName, foldType = name, f.Type
			}
		}
		return false
	}
	walk(t)
	if foldType == nil {
		return key, nil, false
	}
	return foldName, foldType, true
}

// skipRest reads the rest of the object or array whose opening dec has read.
func skipRest(dec *json.Decoder) error {
	for depth := 1; depth > 0; {
		tok, err := dec.Token()
		if err != nil {
			return err
		}
		switch tok {
		case json.Delim('{'), json.Delim('['):
			depth++
		case json.Delim('}'), json.Delim(']'):
			depth--
		}
	}
	return nil
}
