package segments

import (
	"bytes"
	"io"
	"regexp"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"
)

// readAll returns every record of a CSV body (no header handling).
func readAll(t testing.TB, body string, delim byte) []record {
	t.Helper()
	rr := &recordReader{src: newLineSource(strings.NewReader(body)), p: recParser{delim: delim}}
	var out []record
	for {
		rec, err := rr.read()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatalf("read: %v", err)
		}
		out = append(out, rec)
	}
}

func TestRecordReader(t *testing.T) {
	type rec struct {
		line   int
		fields []string
		bad    bool
	}
	tests := []struct {
		name  string
		body  string
		delim byte
		want  []rec
	}{
		{"lf", "a,b\nc,d\n", ',', []rec{{1, []string{"a", "b"}, false}, {2, []string{"c", "d"}, false}}},
		{"crlf no final newline", "a,b\r\nc,d", ',', []rec{{1, []string{"a", "b"}, false}, {2, []string{"c", "d"}, false}}},
		{"quoted delimiter and quote", `"a,1","say ""hi""",x` + "\n", ',', []rec{{1, []string{"a,1", `say "hi"`, "x"}, false}}},
		{"quoted newline counts lines", "\"a\r\nb\nc\",x\nnext,y\n", ',', []rec{{1, []string{"a\nb\nc", "x"}, false}, {4, []string{"next", "y"}, false}}},
		{"blank line kept as one empty field", "a\n\nb\n", ',', []rec{{1, []string{"a"}, false}, {2, []string{""}, false}, {3, []string{"b"}, false}}},
		{"semicolon", "a;\"b;c\";d\n", ';', []rec{{1, []string{"a", "b;c", "d"}, false}}},
		{"tab", "a\tb c\n", '\t', []rec{{1, []string{"a", "b c"}, false}}},
		{"bare quote inside unquoted field", `TV 5" screen,x` + "\n", ',', []rec{{1, []string{`TV 5" screen`, "x"}, false}}},
		{"space after closing quote", `"a"  ,b` + "\n", ',', []rec{{1, []string{"a", "b"}, false}}},
		{"text after closing quote", `"a"b,c` + "\nd,e\n", ',', []rec{{1, nil, true}, {2, []string{"d", "e"}, false}}},
		// A quote never closed: line 2 is rejected, lines 3 and 4 are read again as rows.
		{"unterminated quote", "h,i\n+66812345678,\"Bob\n+66812345679,Al\n+66812345670,Cy\n", ',',
			[]rec{{1, []string{"h", "i"}, false}, {2, nil, true}, {3, []string{"+66812345679", "Al"}, false}, {4, []string{"+66812345670", "Cy"}, false}}},
		// A runaway quote closed by the next row's quote: that row still gets imported.
		{"runaway quote", "+1,\"Bob\n+2,\"Al\",x\n+3,y\n", ',',
			[]rec{{1, nil, true}, {2, []string{"+2", "Al", "x"}, false}, {3, []string{"+3", "y"}, false}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []rec
			for _, r := range readAll(t, tt.body, tt.delim) {
				got = append(got, rec{r.line, r.fields, r.bad != ""})
				if r.bad != "" {
					got[len(got)-1].fields = nil
				}
			}
			if len(got) != len(tt.want) {
				t.Fatalf("got %d records %+v, want %d %+v", len(got), got, len(tt.want), tt.want)
			}
			for i := range got {
				if got[i].line != tt.want[i].line || got[i].bad != tt.want[i].bad || !slices.Equal(got[i].fields, tt.want[i].fields) {
					t.Fatalf("record %d = %+v, want %+v", i, got[i], tt.want[i])
				}
			}
		})
	}
}

func TestRecordReaderLongLine(t *testing.T) {
	body := "a,b\n" + strings.Repeat("x", maxLineBytes+10) + "\nc,d\n"
	recs := readAll(t, body, ',')
	if len(recs) != 3 || recs[1].line != 2 || !strings.Contains(recs[1].bad, "too long") || recs[2].line != 3 || recs[2].fields[0] != "c" {
		t.Fatalf("records = %+v", recs)
	}
}

func TestRecordReaderRunawayLimit(t *testing.T) {
	// A quote opened on line 1 and no other quote in the file: line 1 is rejected once
	// the record passes maxRecordLines, and every later line still comes back as a row.
	var b strings.Builder
	b.WriteString("\"open,x\n")
	for i := 0; i < maxRecordLines+50; i++ {
		b.WriteString("+1,y\n")
	}
	recs := readAll(t, b.String(), ',')
	if len(recs) != maxRecordLines+51 || recs[0].bad == "" || recs[1].line != 2 || recs[len(recs)-1].line != maxRecordLines+51 {
		t.Fatalf("got %d records, first %+v", len(recs), recs[0])
	}
}

func TestDetectDelimiter(t *testing.T) {
	for in, want := range map[string]byte{
		"phone,name,tags": ',', "phone;name;tags": ';', "phone\tname\ttags": '\t', "phone": ',',
		`"a;b",c`: ',', `phone;"name,full";tags`: ';', "a,b;c": ',',
	} {
		if got := detectDelimiter([]byte(in)); got != want {
			t.Errorf("detectDelimiter(%q) = %q, want %q", in, got, want)
		}
	}
}

func FuzzReadRecords(f *testing.F) {
	for _, s := range []string{"a,b\nc,d\n", "\"a\nb\",c\r\n", "\"x\n\"y\"z\n1,2", "\"", "a\n\n\n", "\"\"\"\n\""} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		lines := bytes.Count(data, []byte("\n"))
		if len(data) > 0 && data[len(data)-1] != '\n' {
			lines++
		}
		last := 0
		for _, r := range readAll(t, string(data), ',') {
			if r.line <= last || r.line > lines {
				t.Fatalf("record at line %d after line %d (file has %d lines)", r.line, last, lines)
			}
			last = r.line
			if r.bad == "" && len(r.fields) == 0 {
				t.Fatalf("line %d: a record with no fields", r.line)
			}
		}
	})
}

var tagRE = regexp.MustCompile(`^[a-z0-9_-]+$`)

// FuzzImportLine checks one data line of a file against a fixed header: it is either
// rejected with a reason, skipped as blank, or becomes a row whose values are clean.
func FuzzImportLine(f *testing.F) {
	header := []string{"Phone", "Name", "Tags", "Opted In", "Country", "Locale", "TZ", "Plan", "E-mail", "Telegram", "LINE ID"}
	lay, err := newLayout(slices.Clone(header), nil)
	if err != nil {
		f.Fatal(err)
	}
	for _, s := range []string{
		"+66 81 234 5678,Somchai,\"VIP; gold\",yes,,th,,premium,",
		"0812345678,Bob,,no,TH,,Asia/Bangkok,,Bob@Example.com",
		"(11) 91234-5678,,a|b,1,BR,pt-BR,,,",
		"12,x,,maybe,,,,,", ",,,,,,,,", "+1 201-555-0123,\"Al, Jr\",,,,,,,", "\xff\xfe,,,,,,,,",
		"+447400123456,,ลูกค้า,,,,,,", "+4915123456789,,,,DE,de_de,Europe/Berlin,x,",
		",Ann,,,,,,,ann@example.com", ",Ann,,,,,,,ann", ",Ann,,,,,,,\"Ann <a@b.co>\"",
	} {
		f.Add(s + ",,")
	}
	for _, s := range []string{",,,,,,,,,123456789,", ",,,,,,,,, -100123 ,", ",,,,,,,,,1.23457E+11,", ",,,,,,,,,+66812345678,",
		",,,,,,,,,,U4AF4980629D8EF6E1CC5D5A27E6BF99C", ",,,,,,,,,,Cabc", ",,,,,,,,,0,u0123456789abcdef0123456789abcdef"} {
		f.Add(s)
	}
	cfg := &rowConfig{region: "TH", zones: &zoneCache{}}
	f.Fuzz(func(t *testing.T, line string) {
		fields, bad, ok := splitLine(line, ',')
		if !ok {
			return // opens a quoted field that goes on to the next line
		}
		r, rej, blank := lay.parse(record{line: 7, fields: fields, bad: bad}, cfg)
		switch {
		case rej != nil:
			if rej.Line != 7 || rej.Reason == "" || !utf8.ValidString(rej.Value) || len(rej.Value) > maxValueLen+len("…") {
				t.Fatalf("bad reject %+v", rej)
			}
			return
		case blank:
			if bad != "" {
				t.Fatal("malformed line taken as blank")
			}
			for _, f := range fields {
				if strings.TrimSpace(f) != "" {
					t.Fatalf("line with value %q taken as blank", f)
				}
			}
			return
		}
		if len(fields) != len(header) {
			t.Fatalf("row with %d fields accepted", len(fields))
		}
		if r.ident() == (identity{}) {
			t.Fatalf("a row without an identity: %+v", r)
		}
		if r.telegram != "" {
			if again, err := normTelegram(r.telegram); err != nil || again != r.telegram || string(appendRecord(nil, &profile{f: []field{{hTelegram, r.telegram}}}))[1] != recTelegram {
				t.Fatalf("chat id %q is not canonical: %v", r.telegram, err)
			}
		}
		if _, ok := lineHex(r.lineUser); r.lineUser != "" && !ok {
			t.Fatalf("LINE id %q is not canonical", r.lineUser)
		}
		if r.email != "" {
			if again, err := normEmail(r.email); err != nil || again != r.email {
				t.Fatalf("email %q is not normalized: %v", r.email, err)
			}
		}
		if r.phone.E164 == "" {
		} else if again, err := parsePhone(r.phone.E164, ""); err != nil || again.E164 != r.phone.E164 {
			t.Fatalf("phone %q is not a stable E.164 number: %v", r.phone.E164, err)
		}
		for _, tag := range r.tags {
			if !tagRE.MatchString(tag) {
				t.Fatalf("tag %q not normalized", tag)
			}
		}
		for _, s := range []string{r.name, r.email, r.locale, r.tz, r.country} {
			if !utf8.ValidString(s) || s != strings.TrimSpace(s) {
				t.Fatalf("value %q not clean", s)
			}
		}
		if r.optIn < -1 || r.optIn > 1 {
			t.Fatalf("optIn = %d", r.optIn)
		}
	})
}
