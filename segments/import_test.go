package segments

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestImportMessyFile(t *testing.T) {
	s, _, _ := newStore(t)
	cons := &consentRecorder{s: s}
	// BOM, CRLF, a header with odd spacing and case, a quoted name over two lines, tags
	// separated three ways, a blank line and a line of empty fields, custom attributes.
	body := "\xEF\xBB\xBF Phone Number ,Full Name,Labels,WhatsApp Opt-In,Language,Loyalty Points,TZ\r\n" +
		"+66 81 234 5678,Somchai,\"VIP; Gold\",yes,th,120,\r\n" +
		"0812345679,\"Nok\r\n(second line)\",vip|churned,N,TH,,Asia/Bangkok\r\n" +
		"\r\n" +
		",,,,,,\r\n" +
		"+62 812-3456-7890,\"Budi, Jr\",\"a,b\",,id,7,\r\n" +
		"+44 7400 123456,Ann,,1,en-gb,,\r\n"
	var progress []int64
	rep := importString(t, s, body, ImportOptions{DefaultRegion: "TH", Source: "messy.csv", Consent: cons,
		Progress: func(rows, bytes int64) { progress = append(progress, rows, bytes) }})
	if rep.Read != 4 || rep.Created != 4 || rep.Rejected != 0 {
		t.Fatalf("report = %+v, rejects %v", rep, rep.Rejects)
	}
	if len(progress) != 2 || progress[0] != 4 || progress[1] != int64(len(body)) {
		t.Fatalf("progress = %v, want [4 %d]", progress, len(body))
	}

	somchai := mustProfile(t, s, mustLookup(t, s, "+66812345678"))
	want := Contact{ID: somchai.ID, Phone: "+66812345678", Name: "Somchai", Country: "TH", TimeZone: "Asia/Bangkok",
		Locale: "th", Tags: []string{"gold", "vip"}, Attrs: map[string]string{"loyalty_points": "120"}}
	if !equalContact(somchai, want) {
		t.Fatalf("profile = %+v, want %+v", somchai, want)
	}
	nok := mustProfile(t, s, mustLookup(t, s, "66812345679")) // WhatsApp wa_id form
	if nok.Name != "Nok\n(second line)" || !slices.Equal(nok.Tags, []string{"churned", "vip"}) || nok.Locale != "th" {
		t.Fatalf("nok = %+v", nok)
	}
	budi := mustProfile(t, s, mustLookup(t, s, "+6281234567890"))
	if budi.Name != "Budi, Jr" || budi.Country != "ID" || budi.TimeZone != "Asia/Jakarta" || !slices.Equal(budi.Tags, []string{"a", "b"}) {
		t.Fatalf("budi = %+v", budi)
	}
	ann := mustProfile(t, s, mustLookup(t, s, "+447400123456"))
	if ann.Country != "GB" || ann.Locale != "en-GB" || ann.TimeZone != "Europe/London" {
		t.Fatalf("ann = %+v", ann)
	}

	// Consent rows: only those with a value, with physical line numbers (the quoted
	// name spans lines 3 and 4, so Ann is on line 8).
	if len(cons.errs) > 0 {
		t.Fatal(cons.errs)
	}
	got := map[int]bool{}
	for _, r := range cons.rows {
		got[r.Line] = r.OptedIn
	}
	if !maps.Equal(got, map[int]bool{2: true, 3: false, 8: true}) {
		t.Fatalf("consent rows = %+v", cons.rows)
	}

	if ids := members(t, s, "vip and not churned"); !slices.Equal(ids, []uint32{somchai.ID}) {
		t.Fatalf("vip and not churned = %v", ids)
	}
	if ids := members(t, s, "locale:th and country:TH"); !slices.Equal(ids, []uint32{somchai.ID, nok.ID}) {
		t.Fatalf("locale:th = %v", ids)
	}
}

func equalContact(a, b Contact) bool {
	return a.ID == b.ID && a.Phone == b.Phone && a.Email == b.Email && a.Name == b.Name && a.Country == b.Country &&
		a.TimeZone == b.TimeZone && a.Locale == b.Locale && slices.Equal(a.Tags, b.Tags) && maps.Equal(a.Attrs, b.Attrs)
}

func TestImportDelimiters(t *testing.T) {
	for name, body := range map[string]string{
		"semicolon": "phone;name;tags\n+66812345678;\"Somchai; the first\";vip\n0812345679;Nok;\n",
		"tab":       "phone\tname\ttags\n+66812345678\tSomchai; the first\tvip\n0812345679\tNok\t\n",
	} {
		t.Run(name, func(t *testing.T) {
			s, _, _ := newStore(t)
			rep := importString(t, s, body, ImportOptions{DefaultRegion: "TH"})
			if rep.Created != 2 || rep.Rejected != 0 {
				t.Fatalf("report = %+v", rep)
			}
			c := mustProfile(t, s, mustLookup(t, s, "+66812345678"))
			if c.Name != "Somchai; the first" || !slices.Equal(c.Tags, []string{"vip"}) {
				t.Fatalf("profile = %+v", c)
			}
		})
	}
}

func TestImportRejects(t *testing.T) {
	s, _, prefix := newStore(t)
	_ = prefix
	lines := []struct {
		text   string
		reason string // "" for a row that is imported
	}{
		{"phone,name,country,opted_in,tags", ""}, // line 1: header
		// Valid national numbers of several regions, the region from the country column.
		{"081 234 5678,th,TH,,", ""},
		{"0812 3456 7890,id,ID,,", ""},
		{"(11) 91234-5678,br,BR,,", ""},
		{"098765 43210,in,IN,,", ""},
		{"(201) 555-0123,us,US,,", ""},
		{"07400 123456,gb,GB,,", ""},
		{"01512 3456789,de,DE,,", ""},
		// Invalid numbers of the same regions.
		{"081234567,th,TH,,", "invalid phone"},
		{"+62 21 123,id,,,", "invalid phone"},
		{"+55 11 1234,br,,,", "invalid phone"},
		{"+91 98765 4321,in,,,", "invalid phone"},
		{"+1 123-456-7890,us,,,", "invalid phone"},
		{"+44 7400 12345,gb,,,", "invalid phone"},
		{"+49 123,de,,,", "invalid phone"},
		{"6.68123E+10,excel,,,", "invalid phone"},
		{"0812345699,no region,,,", "invalid phone"},
		{",nobody,TH,,", "phone is missing"},
		{"+66812345670,short", "wrong number of fields (got 2, header has 5)"},
		{"+66812345671,long,,,,extra", "wrong number of fields (got 6, header has 5)"},
		{"+66812345672,Jos\xe9,,,", "invalid UTF-8"},
		{"+66812345673,maybe,,maybe,", "invalid opted_in value"},
		{"+66812345674,x,Thailand,,", "invalid country"},
		{"+66812345675,x,,,ลูกค้า", "invalid tag"},
		{"+66812345676,\"bad\"quote,,,", "malformed row"},
		{"+66812345677,\"two", ""}, // a quoted field over two lines: one row, lines 27–28
		{"lines\",,,", ""},
		{"+66812345680,after,,,", ""},
	}
	var b strings.Builder
	for _, l := range lines {
		b.WriteString(l.text + "\n")
	}
	rep := importString(t, s, b.String(), ImportOptions{})
	var want []Reject
	for i, l := range lines {
		if l.reason != "" {
			want = append(want, Reject{Line: i + 1, Reason: l.reason})
		}
	}
	if rep.Rejected != int64(len(want)) || len(rep.Rejects) != len(want) {
		t.Fatalf("rejected %d: %v\nwant %d", rep.Rejected, rep.Rejects, len(want))
	}
	for i, r := range rep.Rejects {
		if r.Line != want[i].Line || r.Reason != want[i].Reason {
			t.Errorf("reject %d = line %d %q, want line %d %q", i, r.Line, r.Reason, want[i].Line, want[i].Reason)
		}
		if r.Hint == "" || !strings.HasPrefix(r.String(), fmt.Sprintf("line %d: %s", r.Line, r.Reason)) {
			t.Errorf("reject %d has no hint or a bad String(): %q", i, r.String())
		}
	}
	if r := rep.Rejects[0]; r.Value != "081234567" || r.Column != "phone" {
		t.Errorf("first reject = %+v, want the phone value and column", r)
	}
	if r := rep.Rejects[12]; r.Reason != "invalid UTF-8" || r.Value != "Jos\uFFFD" || r.Column != "name" {
		t.Errorf("UTF-8 reject = %+v", r)
	}
	if rep.Created != 9 || rep.Read != 26 { // 28 lines: a header and a row over two lines
		t.Fatalf("report = %+v", rep)
	}
	if c := mustProfile(t, s, mustLookup(t, s, "+66812345677")); c.Name != "two\nlines" {
		t.Fatalf("multi-line row = %+v", c)
	}
	mustLookup(t, s, "+66812345680") // the row after it
	for _, bad := range []string{"+66812345670", "+66812345672", "+66812345676"} {
		if _, err := s.LookupPhone(context.Background(), bad); !errors.Is(err, ErrNotFound) {
			t.Errorf("rejected %s was imported: %v", bad, err)
		}
	}
}

func TestImportRejectsKeepFirstThousand(t *testing.T) {
	s, _, _ := newStore(t)
	var b strings.Builder
	b.WriteString("phone\n")
	for i := 0; i < 1500; i++ {
		b.WriteString("123\n")
	}
	rep := importString(t, s, b.String(), ImportOptions{BatchSize: 100})
	if rep.Rejected != 1500 || len(rep.Rejects) != 1000 || rep.Rejects[999].Line != 1001 {
		t.Fatalf("rejected %d, kept %d", rep.Rejected, len(rep.Rejects))
	}
}

func TestImportDuplicates(t *testing.T) {
	s, rdb, _ := newStore(t)
	// One number written four ways, across batches of 2 rows.
	body := "phone,name,tags\n" +
		"+66 81 234 5678,Somchai,a\n" +
		"0812345678,,b\n" +
		"66812345678,Somchai,a\n" +
		"+66-81-234-5678,Somchai S.,c\n" +
		"+66812345679,Other,\n"
	rep := importString(t, s, body, ImportOptions{DefaultRegion: "TH", BatchSize: 2})
	if rep.Created != 2 || rep.Updated != 2 || rep.Unchanged != 1 {
		t.Fatalf("report = %+v", rep)
	}
	c := mustProfile(t, s, mustLookup(t, s, "+66812345678"))
	if c.ID != 1 || c.Name != "Somchai S." || !slices.Equal(c.Tags, []string{"a", "b", "c"}) {
		t.Fatalf("profile = %+v", c)
	}
	if seq := rdb.Get(context.Background(), s.kSeq()).Val(); seq != "2" {
		t.Fatalf("contact:seq = %s, want 2", seq)
	}
}

func TestImportTwiceChangesNothing(t *testing.T) {
	s, rdb, prefix := newStore(t)
	cons := &consentRecorder{s: s}
	body := "\xEF\xBB\xBFphone;name;email;tags;opted_in;locale;timezone;plan\r\n" +
		"+66812345678;Somchai;S@Example.com;\"vip;gold\";yes;th-th;Asia/Bangkok;pro\r\n" +
		"0812345679;Nok;;;no;;;\r\n" +
		"bad;x;;;;;;\r\n" +
		"+5511912345678;\"Ana\nMaria\";;VIP;1;pt_br;;free\r\n"
	o := ImportOptions{DefaultRegion: "TH", Consent: cons, AddTags: []string{"Imported 2025"}}
	first := importString(t, s, body, o)
	if first.Created != 3 || first.Rejected != 1 {
		t.Fatalf("first import: %+v", first)
	}
	before := snapshot(t, rdb, prefix)
	second := importString(t, s, body, o)
	if second.Unchanged != 3 || second.Created != 0 || second.Updated != 0 || second.Rejected != 1 {
		t.Fatalf("second import: %+v", second)
	}
	if d := diffSnapshots(before, snapshot(t, rdb, prefix)); len(d) > 0 {
		t.Fatalf("re-import changed Redis:\n%s", strings.Join(d, "\n"))
	}
	// Consent rows are handed over both times; the ledger decides they change nothing.
	if len(cons.rows) != 6 || len(cons.errs) > 0 {
		t.Fatalf("consent rows = %+v, errs %v", cons.rows, cons.errs)
	}
	c := mustProfile(t, s, mustLookup(t, s, "+66812345678"))
	if c.Email != "s@example.com" || c.Locale != "th-TH" || !slices.Equal(c.Tags, []string{"gold", "imported_2025", "vip"}) {
		t.Fatalf("profile = %+v", c)
	}
}

func TestImportUpdatesAndRemovesTags(t *testing.T) {
	s, _, _ := newStore(t)
	importString(t, s, "phone,name,locale,tags\n+66812345678,Somchai,th,vip;gold\n+66812345679,Nok,th,vip\n", ImportOptions{})
	rep := importString(t, s, "phone,name,locale,tags\n+66812345678,Somchai,en,\n+66812345679,,,new\n",
		ImportOptions{RemoveTags: []string{"VIP"}})
	if rep.Updated != 2 {
		t.Fatalf("report = %+v", rep)
	}
	a := mustProfile(t, s, mustLookup(t, s, "+66812345678"))
	b := mustProfile(t, s, mustLookup(t, s, "+66812345679"))
	if a.Locale != "en" || !slices.Equal(a.Tags, []string{"gold"}) || b.Name != "Nok" || !slices.Equal(b.Tags, []string{"new"}) {
		t.Fatalf("profiles = %+v, %+v", a, b)
	}
	for expr, want := range map[string][]uint32{"vip": nil, "locale:th": {b.ID}, "locale:en": {a.ID}, "gold or new": {a.ID, b.ID}} {
		if got := members(t, s, expr); !slices.Equal(got, want) {
			t.Errorf("%s = %v, want %v", expr, got, want)
		}
	}
	tc, err := s.TagCounts(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if want := []TagCount{{"gold", 1}, {"new", 1}, {"vip", 0}}; !slices.Equal(tc, want) {
		t.Fatalf("TagCounts = %v, want %v", tc, want)
	}
}

func TestImportColumns(t *testing.T) {
	s, _, _ := newStore(t)
	body := "Handphone,Nama,Segment,Notes,Internal ID\n+6281234567890,Budi,vip,hello,42\n"
	rep := importString(t, s, body, ImportOptions{Columns: map[string]string{
		"handphone": "phone", "NAMA": "name", "segment": "tags", "notes": "-", "Internal ID": "crm_id"}})
	if rep.Created != 1 {
		t.Fatalf("report = %+v", rep)
	}
	c := mustProfile(t, s, mustLookup(t, s, "+6281234567890"))
	if c.Name != "Budi" || !slices.Equal(c.Tags, []string{"vip"}) || !maps.Equal(c.Attrs, map[string]string{"crm_id": "42"}) {
		t.Fatalf("profile = %+v", c)
	}
}

func TestImportBadFiles(t *testing.T) {
	tests := []struct {
		name, body string
		o          ImportOptions
		want       string
	}{
		{"empty", "", ImportOptions{}, "the file is empty"},
		{"blank", "\n\n", ImportOptions{}, "the file is empty"},
		{"no phone column", "name,tags\nBob,vip\n", ImportOptions{}, "line 1: no phone column among name, tags"},
		{"data instead of header", "+66812345678,Bob\n", ImportOptions{}, "line 1 looks like a row of data"},
		{"utf-16", "\xff\xfep\x00h\x00", ImportOptions{}, "UTF-16"},
		{"two phone columns", "phone,mobile\n1,2\n", ImportOptions{}, `columns 1 "phone" and 2 "mobile" both hold phone`},
		{"bad attribute name", "phone,แต้ม\n", ImportOptions{}, `column 2 "แต้ม": a custom attribute name`},
		{"mapping names no column", "phone\n", ImportOptions{Columns: map[string]string{"cell": "phone"}}, `names "cell", but the header has no such column`},
		{"bad region", "phone\n", ImportOptions{DefaultRegion: "Thailand"}, `default region "Thailand"`},
		{"bad tag option", "phone\n", ImportOptions{AddTags: []string{"ลูกค้า"}}, "tags to add"},
		{"tag added and removed", "phone\n", ImportOptions{AddTags: []string{"a"}, RemoveTags: []string{"A"}}, `tag "a" is both added and removed`},
		{"old mac", "phone,name\r+66812345678,Bob\r", ImportOptions{}, "old Mac line endings"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, rdb, prefix := newStore(t)
			_, err := s.ImportCSV(context.Background(), strings.NewReader(tt.body), tt.o)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("ImportCSV = %v, want an error containing %q", err, tt.want)
			}
			if snap := snapshot(t, rdb, prefix); len(snap) > 0 {
				t.Fatalf("a rejected file wrote %v", snap)
			}
		})
	}
}

type failingSink struct{ n int }

func (f *failingSink) ImportConsent(ctx context.Context, rows []ConsentRow) error {
	f.n++
	if f.n == 2 {
		return errors.New("ledger unavailable")
	}
	return nil
}

func TestImportStopsWhenConsentFails(t *testing.T) {
	s, _, _ := newStore(t)
	var b strings.Builder
	b.WriteString("phone,opted_in\n")
	for i := range 10 {
		fmt.Fprintf(&b, "+668123456%02d,yes\n", i)
	}
	rep, err := s.ImportCSV(context.Background(), strings.NewReader(b.String()), ImportOptions{BatchSize: 3, Consent: &failingSink{}})
	if err == nil || !strings.Contains(err.Error(), "lines 5–7") || !strings.Contains(err.Error(), "ledger unavailable") {
		t.Fatalf("err = %v", err)
	}
	if rep.Created != 6 {
		t.Fatalf("report = %+v", rep)
	}
}

func TestImportCancelled(t *testing.T) {
	s, _, _ := newStore(t)
	ctx, cancel := context.WithCancel(context.Background())
	var b strings.Builder
	b.WriteString("phone\n")
	for i := range 100 {
		fmt.Fprintf(&b, "+668123456%02d\n", i)
	}
	rep, err := s.ImportCSV(ctx, strings.NewReader(b.String()), ImportOptions{BatchSize: 10,
		Progress: func(rows, _ int64) {
			if rows >= 30 {
				cancel()
			}
		}})
	if !errors.Is(err, context.Canceled) || rep.Created < 30 || rep.Created == 100 {
		t.Fatalf("ImportCSV = %+v, %v", rep, err)
	}
}

func TestImportConcurrentImportersShareIds(t *testing.T) {
	s, rdb, _ := newStore(t)
	const importers, phones = 4, 600
	var wg sync.WaitGroup
	errs := make(chan error, importers)
	for w := range importers {
		// Each importer has every phone, in its own order and format.
		var b strings.Builder
		b.WriteString("phone,tags\n")
		for i := range phones {
			n := (i*7 + w*131) % phones
			if w%2 == 0 {
				fmt.Fprintf(&b, "+66 81 200 %04d,w%d\n", n, w)
			} else {
				fmt.Fprintf(&b, "081200%04d,w%d\n", n, w)
			}
		}
		wg.Go(func() {
			_, err := s.ImportCSV(context.Background(), strings.NewReader(b.String()), ImportOptions{DefaultRegion: "TH", BatchSize: 50})
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	ctx := context.Background()
	if n := len(identEntries(t, rdb, s, false)); n != phones {
		t.Fatalf("identity index has %d phones, want %d", n, phones)
	}
	if seq := rdb.Get(ctx, s.kSeq()).Val(); seq != fmt.Sprint(phones) {
		t.Fatalf("contact:seq = %s, want %d (dense ids)", seq, phones)
	}
	n, err := s.Count(ctx, "w0 and w1 and w2 and w3")
	if err != nil || n != phones {
		t.Fatalf("contacts with every importer's tag = %d, %v", n, err)
	}
	// The displayed tag list kept every importer's tag despite concurrent merges.
	ids := make([]uint32, phones)
	for i := range ids {
		ids[i] = uint32(i + 1)
	}
	ps, err := s.Profiles(ctx, ids)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range ps {
		if !slices.Equal(p.Tags, []string{"w0", "w1", "w2", "w3"}) {
			t.Fatalf("contact %d tags = %v", p.ID, p.Tags)
		}
	}
}

// slowSink holds every tenth consent batch for a while, so the batches behind it pile
// up before the resolver and the writer.
type slowSink struct {
	mu    sync.Mutex
	calls int
}

func (s *slowSink) ImportConsent(context.Context, []ConsentRow) error {
	s.mu.Lock()
	s.calls++
	slow := s.calls%10 == 1
	s.mu.Unlock()
	if slow {
		time.Sleep(100 * time.Millisecond)
	}
	return nil
}

// An import whose resolver and writer take waiting batches together leaves Redis and
// its report exactly as one batch of the whole file does, with contacts repeated
// across batches (new in the first, merged into in the later ones).
func TestImportBatchesTogether(t *testing.T) {
	_, rdb, prefix := newStore(t)
	var b strings.Builder
	b.WriteString("phone,email,name,tags,opted_in\n")
	for i := range 3000 {
		n := i
		switch {
		case i%7 == 6 && i < 1500:
			n = i - 150 // a contact of a batch maybe still in flight, again
		case i%7 == 6:
			n = i - 1000 // of a batch written long ago
		}
		email := ""
		if i%11 == 0 {
			email = fmt.Sprintf("c%d@example.com", n)
		}
		fmt.Fprintf(&b, "+66 81 300 %04d,%s,Name %d-%d,t%d;u%d,yes\n", n, email, n, i%3, i%5, i%13)
	}
	body := b.String()
	now := time.UnixMilli(1_750_000_000_000)
	open := func(p string) *Store {
		s := NewStore(rdb, prefix+p)
		s.now = func() time.Time { return now }
		return s
	}
	together := open("together:")
	took := map[string]int{}
	var mu sync.Mutex
	together.testHookTogether = func(stage string, n int) {
		mu.Lock()
		took[stage] += n
		mu.Unlock()
	}
	rep := importString(t, together, body, ImportOptions{BatchSize: 100, Consent: &slowSink{}})
	one := open("one:")
	want := importString(t, one, body, ImportOptions{BatchSize: maxBatch, Consent: nopSink{}})
	if took["resolve"] == 0 || took["write"] == 0 {
		t.Fatalf("no batches went together (%v): the test did not test it", took)
	}
	if rep.Read != want.Read || rep.Created != want.Created || rep.Updated != want.Updated || rep.Unchanged != want.Unchanged || rep.Rejected != want.Rejected {
		t.Fatalf("report %+v, one batch %+v", rep, want)
	}
	strip := func(m map[string]string, p string) map[string]string {
		out := map[string]string{}
		for k, v := range m {
			out[strings.ReplaceAll(k, p, "")] = v
		}
		return out
	}
	got, exp := strip(snapshot(t, rdb, prefix+"together:"), prefix+"together:"), strip(snapshot(t, rdb, prefix+"one:"), prefix+"one:")
	if len(got) != len(exp) {
		t.Fatalf("%d keys, one batch wrote %d", len(got), len(exp))
	}
	for k, v := range exp {
		if got[k] != v {
			t.Errorf("key %s differs from one batch's", k)
		}
	}
}
