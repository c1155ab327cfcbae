package jsonx

import (
	"reflect"
	"sync"
	"time"
)

// Output is v as Herald prints it (the CLI's --output json; the HTTP API is to use it
// too): a copy in which every nil slice is empty and every nil map is empty, so that a
// list prints as [] and a map as {}, never null, and every time.Time is in UTC. It
// follows exported fields, pointers, slices, maps and interfaces; unexported fields are
// copied as they are, and v itself is not changed. A type with its own MarshalJSON
// gets the copy.
func Output(v any) any {
	if v == nil {
		return nil
	}
	rv := reflect.ValueOf(v)
	if !needsFix(rv.Type()) {
		return v
	}
	return fixed(rv).Interface()
}

var timeType = reflect.TypeFor[time.Time]()

// fixable caches needsFix by type.
var fixable sync.Map // reflect.Type → bool

// needsFix reports whether a value of type t can hold a nil slice or map or a time.
func needsFix(t reflect.Type) bool {
	if b, ok := fixable.Load(t); ok {
		return b.(bool)
	}
	b := holdsFixable(t, map[reflect.Type]bool{})
	fixable.Store(t, b)
	return b
}

func holdsFixable(t reflect.Type, visiting map[reflect.Type]bool) bool {
	if t == timeType {
		return true
	}
	switch t.Kind() {
	case reflect.Slice, reflect.Map, reflect.Interface:
		return true
	case reflect.Pointer, reflect.Array:
		return holdsFixable(t.Elem(), visiting)
	case reflect.Struct:
		if visiting[t] {
			return false // the outer walk of t answers for it
		}
		visiting[t] = true
		for i := 0; i < t.NumField(); i++ {
			if f := t.Field(i); f.IsExported() && holdsFixable(f.Type, visiting) {
				return true
			}
		}
	}
	return false
}

// fixed returns v, or a fixed copy of it when its type needs one.
func fixed(v reflect.Value) reflect.Value {
	t := v.Type()
	if !needsFix(t) {
		return v
	}
	switch t.Kind() {
	case reflect.Struct:
		if t == timeType {
			return reflect.ValueOf(v.Interface().(time.Time).UTC())
		}
		out := reflect.New(t).Elem()
		out.Set(v)
		for i := 0; i < t.NumField(); i++ {
			if f := t.Field(i); f.IsExported() && needsFix(f.Type) {
				out.Field(i).Set(fixed(v.Field(i)))
			}
		}
		return out
	case reflect.Pointer:
		if v.IsNil() {
			return v
		}
		p := reflect.New(t.Elem())
		p.Elem().Set(fixed(v.Elem()))
		return p
	case reflect.Slice:
		if v.IsNil() {
			return reflect.MakeSlice(t, 0, 0)
		}
		if !needsFix(t.Elem()) {
			return v
		}
		out := reflect.MakeSlice(t, v.Len(), v.Len())
		for i := 0; i < v.Len(); i++ {
			out.Index(i).Set(fixed(v.Index(i)))
		}
		return out
	case reflect.Array:
		out := reflect.New(t).Elem()
		for i := 0; i < v.Len(); i++ {
			out.Index(i).Set(fixed(v.Index(i)))
		}
		return out
	case reflect.Map:
		if v.IsNil() {
			return reflect.MakeMap(t)
		}
		if !needsFix(t.Elem()) {
			return v
		}
		out := reflect.MakeMapWithSize(t, v.Len())
		for it := v.MapRange(); it.Next(); {
			out.SetMapIndex(it.Key(), fixed(it.Value()))
		}
		return out
	case reflect.Interface:
		if v.IsNil() {
			return v
		}
		out := reflect.New(t).Elem()
		out.Set(fixed(v.Elem()))
		return out
	}
	return v
}
