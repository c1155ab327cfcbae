package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"reflect"
	"strconv"
	"strings"
	"time"
)

// FieldProblem is one offending part of a request: the JSON Pointer (RFC 6901) of a
// value in the body, or the name of a query or path parameter or header.
type FieldProblem struct {
	Pointer   string `json:"pointer,omitempty"`
	Parameter string `json:"parameter,omitempty"`
	Header    string `json:"header,omitempty"`
	Detail    string `json:"detail"`
}

const (
	maxDecodeProblems = 20 // listed in one answer
	maxDepth          = 32 // of nested objects and lists
)

var (
	timeType      = reflect.TypeFor[time.Time]()
	unmarshalType = reflect.TypeFor[json.Unmarshaler]()
)

// decodeStrict decodes a JSON body into dst (a pointer) and returns what is wrong with
// it, each problem with the pointer of the offending value: malformed JSON (with the
// byte offset), anything after the value, a key dst has no field for (keys match
// exactly: encoding/json would take "Phone" for "phone"), a key given twice, a value of
// the wrong type or out of range (an integer too large for its field, a time that is
// not RFC 3339), a null where a value is needed, nesting deeper than 32. dst is set
// only when there is no problem.
func decodeStrict(body []byte, dst any) []FieldProblem {
	if len(bytes.TrimSpace(body)) == 0 {
		return []FieldProblem{{Pointer: "", Detail: "the body is empty: want a JSON object"}}
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	w := &walker{dec: dec}
	if err := w.value(reflect.TypeOf(dst).Elem(), "", 0); err != nil {
		return []FieldProblem{{Pointer: "", Detail: syntaxDetail(err, dec)}}
	}
	if _, err := dec.Token(); err != io.EOF {
		return []FieldProblem{{Pointer: "", Detail: fmt.Sprintf("unexpected data after the JSON value at byte %d", dec.InputOffset())}}
	}
	if len(w.problems) > 0 {
		return w.problems
	}
	if err := json.Unmarshal(body, dst); err != nil { // the walk accepted what encoding/json refuses: say so rather than guess
		return []FieldProblem{{Pointer: "", Detail: "invalid body: " + err.Error()}}
	}
	return nil
}

func syntaxDetail(err error, dec *json.Decoder) string {
	var se *json.SyntaxError
	switch {
	case errors.As(err, &se):
		return fmt.Sprintf("malformed JSON at byte %d: %s", se.Offset, se.Error())
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return fmt.Sprintf("the JSON value is cut short at byte %d", dec.InputOffset())
	case errors.Is(err, errTooDeep):
		return err.Error()
	}
	return "malformed JSON: " + err.Error()
}

var errTooDeep = fmt.Errorf("the JSON value nests deeper than %d levels", maxDepth)

type walker struct {
	dec      *json.Decoder
	problems []FieldProblem
}

func (w *walker) problem(ptr, format string, a ...any) {
	if len(w.problems) < maxDecodeProblems {
		w.problems = append(w.problems, FieldProblem{Pointer: ptr, Detail: fmt.Sprintf(format, a...)})
	}
}

// escapePointer escapes a key for a JSON Pointer (RFC 6901).
func escapePointer(k string) string {
	return strings.ReplaceAll(strings.ReplaceAll(k, "~", "~0"), "/", "~1")
}

// value reads one JSON value and checks it against t (nil: anything). It returns an
// error only for malformed JSON, after which nothing more can be read.
func (w *walker) value(t reflect.Type, ptr string, depth int) error {
	if depth > maxDepth {
		return errTooDeep
	}
	tok, err := w.dec.Token()
	if err != nil {
		return err
	}
	for t != nil && t.Kind() == reflect.Pointer {
		if tok == nil {
			return nil
		}
		t = t.Elem()
	}
	if t != nil && t != timeType && t.Implements(unmarshalType) || t != nil && reflect.PointerTo(t).Implements(unmarshalType) && t != timeType {
		t = nil // its own decoding decides; the walk only checks the syntax
	}
	switch v := tok.(type) {
	case json.Delim:
		switch v {
		case '{':
			return w.object(t, ptr, depth)
		case '[':
			return w.array(t, ptr, depth)
		}
		return fmt.Errorf("unexpected %q", v)
	case nil:
		if t != nil {
			switch t.Kind() {
			case reflect.Slice, reflect.Map, reflect.Interface:
			default:
				w.problem(ptr, "must not be null: want %s", describe(t))
			}
		}
	case string:
		switch {
		case t == nil, t.Kind() == reflect.Interface:
		case t == timeType:
			if _, err := time.Parse(time.RFC3339Nano, v); err != nil {
				w.problem(ptr, "want a time in RFC 3339, e.g. 2026-03-10T09:00:00Z")
			}
		case t.Kind() == reflect.String:
		default:
			w.problem(ptr, "want %s, not a string", describe(t))
		}
	case bool:
		if t != nil && t.Kind() != reflect.Bool && t.Kind() != reflect.Interface {
			w.problem(ptr, "want %s, not true or false", describe(t))
		}
	case json.Number:
		w.number(t, v, ptr)
	}
	return nil
}

func (w *walker) number(t reflect.Type, n json.Number, ptr string) {
	if t == nil {
		return
	}
	switch t.Kind() {
	case reflect.Interface:
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		if _, err := strconv.ParseInt(string(n), 10, t.Bits()); err != nil {
			w.problem(ptr, "want %s", describe(t))
		}
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		if _, err := strconv.ParseUint(string(n), 10, t.Bits()); err != nil {
			w.problem(ptr, "want %s", describe(t))
		}
	case reflect.Float32, reflect.Float64:
		if f, err := strconv.ParseFloat(string(n), t.Bits()); err != nil || math.IsInf(f, 0) {
			w.problem(ptr, "want %s", describe(t))
		}
	default:
		w.problem(ptr, "want %s, not a number", describe(t))
	}
}

func (w *walker) object(t reflect.Type, ptr string, depth int) error {
	var fields map[string]reflect.Type
	var elem reflect.Type
	ok := t == nil
	if t != nil {
		switch {
		case t.Kind() == reflect.Struct && t != timeType:
			fields, ok = structFields(t), true
		case t.Kind() == reflect.Map && t.Key().Kind() == reflect.String:
			elem, ok = t.Elem(), true
		case t.Kind() == reflect.Interface:
			ok = true
		}
	}
	if !ok {
		w.problem(ptr, "want %s, not an object", describe(t))
		t = nil
	}
	seen := map[string]bool{}
	for w.dec.More() {
		tok, err := w.dec.Token()
		if err != nil {
			return err
		}
		k, _ := tok.(string)
		kp := ptr + "/" + escapePointer(k)
		vt := elem
		if fields != nil {
			ft, known := fields[k]
			if !known {
				w.problem(kp, "unknown field %q", k)
			}
			vt = ft // nil for an unknown field: its value is read, not checked
		}
		if seen[k] {
			w.problem(kp, "field %q is given twice", k)
		}
		seen[k] = true
		if t == nil {
			vt = nil
		}
		if err := w.value(vt, kp, depth+1); err != nil {
			return err
		}
	}
	_, err := w.dec.Token() // }
	return err
}

func (w *walker) array(t reflect.Type, ptr string, depth int) error {
	var elem reflect.Type
	ok := t == nil
	if t != nil {
		switch t.Kind() {
		case reflect.Slice, reflect.Array:
			elem, ok = t.Elem(), true
		case reflect.Interface:
			ok = true
		}
	}
	if !ok {
		w.problem(ptr, "want %s, not a list", describe(t))
	}
	for i := 0; w.dec.More(); i++ {
		if t != nil && t.Kind() == reflect.Array && i == t.Len() {
			w.problem(ptr, "want at most %d items", t.Len())
		}
		if err := w.value(elem, ptr+"/"+strconv.Itoa(i), depth+1); err != nil {
			return err
		}
	}
	_, err := w.dec.Token() // ]
	return err
}

// structFields maps the JSON keys of a struct (its json tags; embedded structs' fields
// count as its own) to their types.
func structFields(t reflect.Type) map[string]reflect.Type {
	out := map[string]reflect.Type{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag := f.Tag.Get("json")
		name, _, _ := strings.Cut(tag, ",")
		if name == "-" && !strings.Contains(tag, ",") {
			continue
		}
		if f.Anonymous && name == "" {
			ft := f.Type
			if ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct {
				for k, v := range structFields(ft) {
					out[k] = v
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
		out[name] = f.Type
	}
	return out
}

// describe says what a value of t looks like in JSON.
func describe(t reflect.Type) string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t == timeType {
		return "a time in RFC 3339"
	}
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return fmt.Sprintf("an integer from %d to %d", int64(-1)<<(t.Bits()-1), int64(1)<<(t.Bits()-1)-1)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return fmt.Sprintf("an integer from 0 to %d", uint64(math.MaxUint64)>>(64-t.Bits()))
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Slice, reflect.Array:
		return "a list"
	case reflect.Map, reflect.Struct:
		return "an object"
	}
	return "a value"
}
