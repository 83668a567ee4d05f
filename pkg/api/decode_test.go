package api

import (
	"strings"
	"testing"
	"time"

	"github.com/infinibay/infinivirt/pkg/errdefs"
)

type inner struct {
	Name string `json:"name"`
}

type Embedded struct {
	Shared string `json:"shared"`
}

type outer struct {
	Embedded
	Inner   *inner           `json:"inner"`
	List    []inner          `json:"list"`
	ByName  map[string]inner `json:"byName"`
	Free    any              `json:"free"`
	When    time.Time        `json:"when"`
	Skipped string           `json:"-"`
	GoName  string
}

// TestDecodeNamesTheWholePath: an unknown field is named by its path at any
// depth, the first in the document when there are several, and what
// encoding/json takes (any case, embedded fields, free values) is taken.
func TestDecodeNamesTheWholePath(t *testing.T) {
	for body, field := range map[string]string{
		`{"nope": 1}`:                                      "x.nope",
		`{"inner": {"name": "a", "nope": 1}}`:              "x.inner.nope",
		`{"list": [{"name": "a"}, {"nope": 1}]}`:           "x.list.nope",
		`{"byName": {"k": {"nope": 1}}}`:                   "x.byName.nope",
		`{"inner": {"nope": 1}, "list": [{"b": 1}]}`:       "x.inner.nope",
		`{"free": {"a": [{"b": 1}]}, "zzz": 1}`:            "x.zzz",
		`{"when": "2026-01-01T00:00:00Z", "Skipped": "x"}`: "x.Skipped",
		`{"inner": {"name": 7}}`:                           "x.inner.name",
		`{"inner": {"name": "a"}} 1`:                       "x",
		`[1]`:                                              "x",
	} {
		var v outer
		err := Decode(strings.NewReader(body), &v, "x")
		if e := errdefs.As(err); err == nil || e.Code != errdefs.CodeInvalidArgument || e.Field != field {
			t.Errorf("%s: got %v, want the field %s", body, err, field)
		}
	}
	var v outer
	if err := Decode(strings.NewReader(`{"INNER": {"Name": "a"}, "shared": "s", "GoName": "g", "goname": "h",
		"free": {"anything": [1, {"at": "all"}]}, "byName": {}, "list": null}`), &v, ""); err != nil {
		t.Fatal(err)
	}
	if v.Inner == nil || v.Inner.Name != "a" || v.Shared != "s" || v.GoName != "h" {
		t.Errorf("decoded %+v", v)
	}
}
