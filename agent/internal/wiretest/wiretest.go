// Package wiretest holds the wire types to the libraries' own in tests:
// the agent's conversions between pkg/api types and library types must
// carry every field, which a filled value and a JSON comparison show.
package wiretest

import (
	"encoding/json"
	"net"
	"net/netip"
	"reflect"
	"strings"
	"testing"
)

// Filled returns a T with every exported field set to a value of its own,
// so that a conversion that drops or mixes up a field shows in the JSON.
func Filled[T any]() T {
	return FilledValue(reflect.TypeFor[T]()).Interface().(T)
}

// FilledValue is Filled for a type known at run time.
func FilledValue(t reflect.Type) reflect.Value {
	v := reflect.New(t).Elem()
	n := 0
	fill(v, &n)
	return v
}

func fill(v reflect.Value, n *int) {
	*n++
	switch v.Interface().(type) {
	case netip.Addr:
		v.Set(reflect.ValueOf(netip.AddrFrom4([4]byte{10, 0, 0, byte(*n)})))
		return
	case netip.Prefix:
		v.Set(reflect.ValueOf(netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(*n), 0, 0}), 16)))
		return
	case net.HardwareAddr:
		v.Set(reflect.ValueOf(net.HardwareAddr{0x52, 0x54, 0, 0, 0, byte(*n)}))
		return
	}
	switch v.Kind() {
	case reflect.String:
		v.SetString("s" + strings.Repeat("x", *n))
	case reflect.Bool:
		v.SetBool(true)
	case reflect.Int, reflect.Int64, reflect.Int32:
		v.SetInt(int64(*n))
	case reflect.Uint64, reflect.Uint32, reflect.Uint:
		v.SetUint(uint64(*n))
	case reflect.Pointer:
		v.Set(reflect.New(v.Type().Elem()))
		fill(v.Elem(), n)
	case reflect.Slice:
		v.Set(reflect.MakeSlice(v.Type(), 2, 2))
		fill(v.Index(0), n)
		fill(v.Index(1), n)
	case reflect.Map:
		v.Set(reflect.MakeMap(v.Type()))
		k, e := reflect.New(v.Type().Key()).Elem(), reflect.New(v.Type().Elem()).Elem()
		fill(k, n)
		fill(e, n)
		v.SetMapIndex(k, e)
	case reflect.Struct:
		for i := range v.NumField() {
			if v.Type().Field(i).IsExported() {
				fill(v.Field(i), n)
			}
		}
	}
}

// SameJSON checks that a and b have one JSON form, and that b's type takes
// a's form with no field left over.
func SameJSON(t *testing.T, name string, a, b any) {
	t.Helper()
	ja, err := json.Marshal(a)
	if err != nil {
		t.Fatal(err)
	}
	jb, err := json.Marshal(b)
	if err != nil {
		t.Fatal(err)
	}
	var va, vb any
	if err := json.Unmarshal(ja, &va); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(jb, &vb); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(va, vb) {
		t.Errorf("%s: the two forms differ:\n%s\n%s", name, ja, jb)
	}
	dec := json.NewDecoder(strings.NewReader(string(ja)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(reflect.New(reflect.TypeOf(b)).Interface()); err != nil {
		t.Errorf("%s: %T does not take %T's form: %v", name, b, a, err)
	}
}
