package segments

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"unicode/utf8"
)

// jsonlSource reads JSON Lines as records. Its columns are the keys seen so far, in
// order of first appearance; records read before a key appeared are completed with
// empty values by layout.
type jsonlSource struct {
	lines   *lineSource
	columns map[string]string
	keys    []string
	index   map[string]int
	lay     *layout
}

func newJSONLSource(r io.Reader, columns map[string]string) *jsonlSource {
	lay, _ := buildLayout(nil, columns, false)
	return &jsonlSource{lines: newLineSource(r), columns: columns, index: map[string]int{}, lay: lay}
}

func (j *jsonlSource) bytesRead() int64 { return j.lines.bytes }

func (j *jsonlSource) layout(recs []record) *layout {
	for i := range recs {
		if recs[i].bad == "" && len(recs[i].fields) < len(j.keys) {
			recs[i].fields = append(recs[i].fields, make([]string, len(j.keys)-len(recs[i].fields))...)
		}
	}
	return j.lay
}

func (j *jsonlSource) read() (record, error) {
	pl, err := j.lines.next()
	if err != nil {
		return record{}, err
	}
	rec := record{line: pl.n}
	if pl.tooLong {
		rec.bad = fmt.Sprintf("the line is longer than %d bytes", maxLineBytes)
		return rec, nil
	}
	b := pl.b
	if pl.n == 1 {
		b = bytes.TrimPrefix(b, []byte("\xEF\xBB\xBF"))
	}
	b = bytes.TrimSpace(b)
	if len(b) == 0 {
		return rec, nil // blank: skipped
	}
	fields, bad := j.parseObject(b)
	rec.fields, rec.bad = fields, bad
	return rec, nil
}

// parseObject turns one JSON object into fields in key order, adding new keys.
func (j *jsonlSource) parseObject(b []byte) ([]string, string) {
	if !utf8.Valid(b) {
		return nil, "invalid UTF-8: save the file as UTF-8"
	}
	if b[0] != '{' {
		return nil, "not a JSON object: each line must be one object such as {\"phone\": \"+66812345678\"}"
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(b, &obj); err != nil {
		return nil, "not a JSON object: " + strings.TrimPrefix(err.Error(), "json: ")
	}
	vals := make(map[string]string, len(obj))
	var added []string
	for k, raw := range obj {
		v, err := jsonScalar(raw, true)
		if err != "" {
			return nil, fmt.Sprintf("key %q: %s", clip(k), err)
		}
		vals[k] = v
		if _, ok := j.index[k]; !ok {
			added = append(added, k)
		}
	}
	if len(added) > 0 {
		slices.Sort(added)
		keys := append(slices.Clone(j.keys), added...)
		lay, err := buildLayout(slices.Clone(keys), j.columns, false)
		if err != nil {
			return nil, strings.TrimPrefix(strings.TrimPrefix(err.Error(), "line 1: "), "line 1, ")
		}
		for i, k := range added {
			j.index[k] = len(j.keys) + i
		}
		j.keys, j.lay = keys, lay
	}
	fields := make([]string, len(j.keys))
	for k, v := range vals {
		fields[j.index[k]] = v
	}
	return fields, ""
}

// jsonScalar returns a JSON value as a cell: strings as they are, numbers as written,
// booleans as true/false, null as empty, and (when array is true) an array of those
// joined with ";".
func jsonScalar(raw json.RawMessage, array bool) (string, string) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return "", "empty value"
	}
	switch raw[0] {
	case '"':
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return "", "bad string"
		}
		return s, ""
	case 'n':
		return "", ""
	case 't', 'f':
		return string(raw), ""
	case '{':
		return "", "a nested object: flatten it into keys of their own"
	case '[':
		if !array {
			return "", "a nested array"
		}
		var items []json.RawMessage
		if err := json.Unmarshal(raw, &items); err != nil {
			return "", "bad array"
		}
		parts := make([]string, 0, len(items))
		for _, it := range items {
			v, err := jsonScalar(it, false)
			if err != "" {
				return "", err
			}
			if v != "" {
				parts = append(parts, v)
			}
		}
		return strings.Join(parts, ";"), ""
	}
	return string(raw), "" // a number, as written
}
