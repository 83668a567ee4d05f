// Package openapigen writes the agent's OpenAPI document from the route
// table and the Go types it names: schemas by reflection over the types and
// their json tags, descriptions from their doc comments, and enums from the
// constants declared with each type. It reads the types' source for the
// last two, so it runs from a checkout (go generate, tests).
package openapigen

import (
	"bytes"
	"encoding/json"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"net/http"
	"net/netip"
	"path/filepath"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/infinibay/infinivirt/agent/httpapi"
	"github.com/infinibay/infinivirt/pkg/api"
)

const module = "github.com/infinibay/infinivirt"

// Generate returns the document for routes. root is the module's directory,
// where the source of the types is read.
func Generate(routes []httpapi.Route, root string) ([]byte, error) {
	g := &generator{root: root, parsed: map[string]bool{}, docs: map[string]string{},
		enums: map[string][]enumValue{}, schemas: map[string]any{}, responses: map[string]any{}, names: map[variant]string{},
		answered: map[reflect.Type]bool{}}
	for _, rt := range routes {
		if rt.Response != nil {
			g.markAnswered(rt.Response)
		}
	}
	doc, err := g.document(routes)
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(doc); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

type enumValue struct{ value, doc string }

type generator struct {
	root    string
	parsed  map[string]bool        // package paths read
	docs    map[string]string      // "pkg.Type" and "pkg.Type.Field": doc comments
	enums   map[string][]enumValue // "pkg.Type": its constants, in source order
	schemas map[string]any         // components.schemas
	// responses are the error answers, by the classes they carry.
	responses map[string]any
	names     map[variant]string
	// answered are the structs that answers carry.
	answered map[reflect.Type]bool
}

// variant is a type's schema in one direction: as a request sends it
// (request true) or as an answer carries it.
type variant struct {
	t       reflect.Type
	request bool
}

const info = "REST/JSON on the agent's Unix socket, /run/infinivirt/agent.sock (mode 0660, group infinivirt; " +
	"the agent checks each peer's credentials and answers 403 PermissionDenied to anyone but root, its own user " +
	"and the group). Try it with `curl --unix-socket /run/infinivirt/agent.sock http://local/v1/vms`. " +
	"Every refusal is an ErrorBody: {\"error\": {\"code\", \"field\", \"message\"}}, its code one of the classes " +
	"below and field the request field at fault; a refused request changes nothing. A malformed path parameter " +
	"(a VM id that is no UUID) is InvalidArgument naming it, an unknown path NotFound, and a method the path " +
	"does not take MethodNotAllowed with an Allow header. An answer never carries null for a list. " +
	"This document is generated from the route table (agent/httpapi) and the pkg/api types: `go generate ./agent/httpapi`."

func (g *generator) document(routes []httpapi.Route) (map[string]any, error) {
	paths := map[string]any{}
	for _, rt := range routes {
		op, err := g.operation(rt)
		if err != nil {
			return nil, fmt.Errorf("%s %s: %w", rt.Method, rt.Path, err)
		}
		ops, _ := paths[rt.Path].(map[string]any)
		if ops == nil {
			ops = map[string]any{}
			paths[rt.Path] = ops
		}
		ops[strings.ToLower(rt.Method)] = op
	}
	// The power verbs are path segments; their enum is still worth a schema.
	if _, err := g.schema(reflect.TypeFor[api.PowerOp](), false); err != nil {
		return nil, err
	}
	var tags []any
	for _, t := range httpapi.Tags {
		tags = append(tags, map[string]any{"name": t.Name, "description": t.Description})
	}
	return map[string]any{
		"openapi": "3.0.3",
		"info": map[string]any{
			"title":       "Infinivirt agent API",
			"version":     "1.0.0",
			"description": info,
		},
		"servers": []any{map[string]any{
			"url":         "http://local",
			"description": "the agent's Unix socket, /run/infinivirt/agent.sock: the host part of the URL is not used",
		}},
		"tags":       tags,
		"paths":      paths,
		"components": map[string]any{"schemas": g.schemas, "responses": g.responses},
	}, nil
}

func (g *generator) operation(rt httpapi.Route) (map[string]any, error) {
	op := map[string]any{"operationId": rt.OperationID, "tags": []string{rt.Tag}, "summary": rt.Summary}
	if rt.Description != "" {
		op["description"] = rt.Description
	}
	var params []any
	for _, seg := range strings.Split(rt.Path, "/") {
		name, ok := strings.CutPrefix(seg, "{")
		if !ok {
			continue
		}
		p, ok := httpapi.PathParams[strings.TrimSuffix(name, "}")]
		if !ok {
			return nil, fmt.Errorf("path parameter %s is not described", seg)
		}
		params = append(params, p)
	}
	var list []any
	for _, p := range append(params, anySlice(rt.Params)...) {
		p := p.(httpapi.Param)
		s, err := g.schema(p.Type, true)
		if err != nil {
			return nil, err
		}
		if p.Format != "" {
			s = withSiblings(s, map[string]any{"format": p.Format})
		}
		list = append(list, map[string]any{"name": p.Name, "in": p.In, "required": p.In == "path",
			"description": p.Description, "schema": s})
	}
	if len(list) > 0 {
		op["parameters"] = list
	}
	if rt.Request != nil {
		s, err := g.schema(rt.Request, true)
		if err != nil {
			return nil, err
		}
		op["requestBody"] = map[string]any{"required": true, "content": map[string]any{"application/json": map[string]any{"schema": s}}}
	}
	responses := map[string]any{}
	for _, code := range rt.Status {
		r, err := g.success(rt, code)
		if err != nil {
			return nil, err
		}
		responses[strconv.Itoa(code)] = r
	}
	errBody, err := g.schema(reflect.TypeFor[api.ErrorBody](), false)
	if err != nil {
		return nil, err
	}
	byStatus := map[int][]string{}
	for _, c := range rt.Errors {
		byStatus[c.HTTPStatus()] = append(byStatus[c.HTTPStatus()], string(c))
	}
	for status, codes := range byStatus {
		name := strings.Join(codes, "Or")
		g.responses[name] = map[string]any{
			"description": strings.Join(codes, " or "),
			"content":     map[string]any{"application/json": map[string]any{"schema": errBody}},
		}
		responses[strconv.Itoa(status)] = map[string]any{"$ref": "#/components/responses/" + name}
	}
	op["responses"] = responses
	return op, nil
}

func anySlice[T any](in []T) []any {
	out := make([]any, len(in))
	for i, v := range in {
		out[i] = v
	}
	return out
}

func (g *generator) success(rt httpapi.Route, code int) (map[string]any, error) {
	r := map[string]any{"description": http.StatusText(code)}
	if rt.Response == nil {
		return r, nil
	}
	s, err := g.schema(rt.Response, false)
	if err != nil {
		return nil, err
	}
	media := rt.Media
	switch media {
	case "":
		media = "application/json"
	case "text/event-stream":
		// Each event's data line is one JSON value of the response type.
		s = map[string]any{"type": "string", "description": "server-sent events; each data line is the JSON of x-event-data",
			"x-event-data": s}
	}
	r["content"] = map[string]any{media: map[string]any{"schema": s}}
	return r, nil
}

var (
	timeType   = reflect.TypeFor[time.Time]()
	addrType   = reflect.TypeFor[netip.Addr]()
	prefixType = reflect.TypeFor[netip.Prefix]()
)

// schema returns the schema of t, in a request when request is set and in
// an answer otherwise: a $ref for named structs and enums, which it adds to
// the components on first use.
func (g *generator) schema(t reflect.Type, request bool) (map[string]any, error) {
	switch t {
	case timeType:
		return map[string]any{"type": "string", "format": "date-time"}, nil
	case addrType:
		return map[string]any{"type": "string", "format": "ipv4"}, nil
	case prefixType:
		return map[string]any{"type": "string", "description": "an address and prefix length, 10.0.0.1/24"}, nil
	}
	if name, ok := g.names[g.variantOf(t, request)]; ok {
		return ref(name), nil
	}
	switch t.Kind() {
	case reflect.Pointer:
		return g.schema(t.Elem(), request)
	case reflect.Bool:
		return map[string]any{"type": "boolean"}, nil
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return map[string]any{"type": "integer"}, nil
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return map[string]any{"type": "integer", "minimum": 0}, nil
	case reflect.Float32, reflect.Float64:
		return map[string]any{"type": "number"}, nil
	case reflect.String:
		return g.stringSchema(t)
	case reflect.Slice, reflect.Array:
		items, err := g.schema(t.Elem(), request)
		if err != nil {
			return nil, err
		}
		return map[string]any{"type": "array", "items": items}, nil
	case reflect.Map:
		if t.Key().Kind() != reflect.String {
			return nil, fmt.Errorf("%s: map keys must be strings", t)
		}
		if t.Elem().Kind() == reflect.Interface {
			return map[string]any{"type": "object"}, nil
		}
		v, err := g.schema(t.Elem(), request)
		if err != nil {
			return nil, err
		}
		return map[string]any{"type": "object", "additionalProperties": v}, nil
	case reflect.Interface:
		return map[string]any{}, nil
	case reflect.Struct:
		return g.structSchema(t, request)
	}
	return nil, fmt.Errorf("%s: no schema for kind %s", t, t.Kind())
}

// withSiblings adds keywords to a schema. OpenAPI 3.0 ignores the siblings
// of a $ref, so a described reference is wrapped in allOf.
func withSiblings(s, extra map[string]any) map[string]any {
	if len(extra) == 0 {
		return s
	}
	out := map[string]any{}
	if _, isRef := s["$ref"]; isRef {
		out["allOf"] = []any{s}
	} else {
		for k, v := range s {
			out[k] = v
		}
	}
	for k, v := range extra {
		out[k] = v
	}
	return out
}

func ref(name string) map[string]any { return map[string]any{"$ref": "#/components/schemas/" + name} }

// register names a variant in the components, telling apart two types of
// one name. The request variant of a struct that answers also carry, when it
// differs, is the type's name with Input added.
func (g *generator) register(v variant) string {
	name := v.t.Name()
	if v.request && g.answered[v.t] {
		name += "Input"
	}
	for _, other := range g.names {
		if other == name {
			name = filepath.Base(v.t.PkgPath()) + name
		}
	}
	g.names[v] = name
	return name
}

// variantOf is the variant t's schema is in: a struct whose request schema
// differs from its answer's has two, every other type one, shared by both
// directions.
func (g *generator) variantOf(t reflect.Type, request bool) variant {
	return variant{t, request && t.Kind() == reflect.Struct && g.differ(t, map[reflect.Type]bool{})}
}

// differ reports whether a struct's request schema differs from its answer
// schema: whether it, or a struct it holds, has a field with a default
// (required in answers, which always carry it, and not in requests).
func (g *generator) differ(t reflect.Type, seen map[reflect.Type]bool) bool {
	if seen[t] || t == timeType || t == addrType || t == prefixType {
		return false
	}
	seen[t] = true
	for i := range t.NumField() {
		f := t.Field(i)
		_, opts, _ := strings.Cut(f.Tag.Get("json"), ",")
		if _, hasDefault := f.Tag.Lookup("default"); hasDefault && !strings.Contains(opts, "omitempty") {
			return true
		}
		if e := elemStruct(f.Type); e != nil && g.differ(e, seen) {
			return true
		}
	}
	return false
}

// elemStruct is the struct a type holds, through pointers, slices and maps;
// nil when it holds none.
func elemStruct(t reflect.Type) reflect.Type {
	for {
		switch t.Kind() {
		case reflect.Pointer, reflect.Slice, reflect.Array, reflect.Map:
			t = t.Elem()
		case reflect.Struct:
			return t
		default:
			return nil
		}
	}
}

// markAnswered records the structs an answer of type t carries.
func (g *generator) markAnswered(t reflect.Type) {
	e := elemStruct(t)
	if e == nil || g.answered[e] {
		return
	}
	g.answered[e] = true
	for i := range e.NumField() {
		if f := e.Field(i); f.IsExported() || f.Anonymous {
			g.markAnswered(f.Type)
		}
	}
}

func (g *generator) stringSchema(t reflect.Type) (map[string]any, error) {
	if t.Name() == "" || t.PkgPath() == "" {
		return map[string]any{"type": "string"}, nil
	}
	if err := g.read(t.PkgPath()); err != nil {
		return nil, err
	}
	key := t.PkgPath() + "." + t.Name()
	values := g.enums[key]
	if len(values) == 0 {
		return map[string]any{"type": "string"}, nil
	}
	s := map[string]any{"type": "string"}
	var enum []string
	var lines []string
	for _, v := range values {
		enum = append(enum, v.value)
		if v.doc != "" {
			lines = append(lines, fmt.Sprintf("`%s`: %s", v.value, v.doc))
		}
	}
	s["enum"] = enum
	desc := g.docs[key]
	if len(lines) > 0 {
		desc = strings.TrimSpace(desc + "\n\n" + strings.Join(lines, "\n\n"))
	}
	if desc != "" {
		s["description"] = desc
	}
	name := g.register(variant{t: t})
	g.schemas[name] = s
	return ref(name), nil
}

func (g *generator) structSchema(t reflect.Type, request bool) (map[string]any, error) {
	var name string
	if t.Name() != "" {
		if err := g.read(t.PkgPath()); err != nil {
			return nil, err
		}
		name = g.register(g.variantOf(t, request)) // before the fields: a type may contain itself
	}
	props := map[string]any{}
	var required []string
	if err := g.fields(t, request, props, &required); err != nil {
		return nil, err
	}
	s := map[string]any{"type": "object", "properties": props, "additionalProperties": false}
	if len(required) > 0 {
		sort.Strings(required)
		s["required"] = required
	}
	if name == "" {
		return s, nil
	}
	if d := g.docs[t.PkgPath()+"."+t.Name()]; d != "" {
		s["description"] = d
	}
	g.schemas[name] = s
	return ref(name), nil
}

// fields adds t's JSON fields, those of embedded structs included, as
// pkg/api's tag convention has them. A field without omitempty is in every
// answer, so required there, and required in a request unless it has a
// server default (a default tag, whose JSON value the document shows). Such
// a field that is a pointer may be null; a nil slice or map is never sent
// as null, see writeJSON.
func (g *generator) fields(t reflect.Type, request bool, props map[string]any, required *[]string) error {
	for i := range t.NumField() {
		f := t.Field(i)
		tag := f.Tag.Get("json")
		if tag == "-" || (!f.IsExported() && !f.Anonymous) {
			continue
		}
		name, opts, _ := strings.Cut(tag, ",")
		if f.Anonymous && name == "" && f.Type.Kind() == reflect.Struct {
			if err := g.fields(f.Type, request, props, required); err != nil {
				return err
			}
			continue
		}
		if name == "" {
			name = f.Name
		}
		s, err := g.schema(f.Type, request)
		if err != nil {
			return fmt.Errorf("%s.%s: %w", t, f.Name, err)
		}
		extra := map[string]any{}
		if d := g.docs[t.PkgPath()+"."+t.Name()+"."+f.Name]; d != "" {
			// Doc comments name the Go field; the document, the JSON one.
			if rest, ok := strings.CutPrefix(d, f.Name+" "); ok {
				d = name + " " + rest
			}
			extra["description"] = d
		}
		def, hasDefault := f.Tag.Lookup("default")
		if hasDefault {
			var v any
			if json.Unmarshal([]byte(def), &v) != nil {
				v = def
			}
			extra["default"] = v
		}
		omitempty := strings.Contains(opts, "omitempty")
		if !omitempty && f.Type.Kind() == reflect.Pointer {
			extra["nullable"] = true
		}
		props[name] = withSiblings(s, extra)
		if !omitempty && (!request || !hasDefault) {
			*required = append(*required, name)
		}
	}
	return nil
}

// read parses a package of the module once, for its doc comments and its
// typed constants.
func (g *generator) read(pkg string) error {
	if g.parsed[pkg] {
		return nil
	}
	g.parsed[pkg] = true
	rel, ok := strings.CutPrefix(pkg, module+"/")
	if !ok {
		return nil // outside the module: no comments or enums
	}
	files, err := filepath.Glob(filepath.Join(g.root, rel, "*.go"))
	if err != nil {
		return err
	}
	if len(files) == 0 {
		return fmt.Errorf("no source for %s under %s", pkg, g.root)
	}
	fset := token.NewFileSet()
	for _, path := range files {
		if strings.HasSuffix(path, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, path, nil, parser.ParseComments)
		if err != nil {
			return err
		}
		for _, decl := range f.Decls {
			if gd, ok := decl.(*ast.GenDecl); ok {
				g.readDecl(pkg, gd)
			}
		}
	}
	return nil
}

func (g *generator) readDecl(pkg string, gd *ast.GenDecl) {
	for _, spec := range gd.Specs {
		switch s := spec.(type) {
		case *ast.TypeSpec:
			doc := s.Doc
			if doc == nil && len(gd.Specs) == 1 {
				doc = gd.Doc
			}
			g.docs[pkg+"."+s.Name.Name] = text(doc)
			st, ok := s.Type.(*ast.StructType)
			if !ok {
				continue
			}
			for _, f := range st.Fields.List {
				d := text(f.Doc)
				if d == "" {
					d = text(f.Comment)
				}
				for _, n := range f.Names {
					g.docs[pkg+"."+s.Name.Name+"."+n.Name] = d
				}
			}
		case *ast.ValueSpec:
			typ, ok := s.Type.(*ast.Ident)
			if gd.Tok != token.CONST || !ok {
				continue
			}
			for _, v := range s.Values {
				lit, ok := v.(*ast.BasicLit)
				if !ok || lit.Kind != token.STRING {
					continue
				}
				val, err := strconv.Unquote(lit.Value)
				if err != nil {
					continue
				}
				d := text(s.Comment)
				if d == "" {
					d = text(s.Doc)
				}
				key := pkg + "." + typ.Name
				g.enums[key] = append(g.enums[key], enumValue{val, d})
			}
		}
	}
}

// text is a comment as one paragraph.
func text(c *ast.CommentGroup) string {
	if c == nil {
		return ""
	}
	return strings.Join(strings.Fields(c.Text()), " ")
}
