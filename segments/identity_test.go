package segments

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
)

// A contact known by email only, then by its phone too: one contact, found by either.
func TestEmailIdentity(t *testing.T) {
	s, _, _ := newStore(t)
	ctx := context.Background()
	rep := importString(t, s, "email,name,tags\nAnn@Example.com,Ann,vip\nbob@example.com,Bob,\n", ImportOptions{})
	if rep.Created != 2 {
		t.Fatalf("report %+v", rep)
	}
	ann, err := s.LookupEmail(ctx, " ann@EXAMPLE.com ")
	if err != nil {
		t.Fatal(err)
	}
	if c := mustProfile(t, s, ann); c.Email != "ann@example.com" || c.Phone != "" || c.Name != "Ann" || !slices.Equal(c.Tags, []string{"vip"}) {
		t.Fatalf("ann = %+v", c)
	}
	// Her phone arrives with her email (another case): the same contact, updated.
	rep = importString(t, s, "phone,email,locale\n+66 81 900 0001,ANN@example.com,th\n", ImportOptions{})
	if rep.Updated != 1 || rep.Created != 0 {
		t.Fatalf("report %+v", rep)
	}
	if id := mustLookup(t, s, "+66819000001"); id != ann {
		t.Fatalf("phone finds %d, email %d", id, ann)
	}
	c := mustProfile(t, s, ann)
	if c.Phone != "+66819000001" || c.Country != "TH" || c.TimeZone != "Asia/Bangkok" || c.Locale != "th" || c.Name != "Ann" {
		t.Fatalf("ann = %+v", c)
	}
	// A row with only the phone is her too.
	rep = importString(t, s, "phone,tags\n0819000001,gold\n", ImportOptions{DefaultRegion: "TH"})
	if rep.Updated != 1 {
		t.Fatalf("report %+v", rep)
	}
	if got := members(t, s, "vip and gold and country:TH"); !slices.Equal(got, []uint32{ann}) {
		t.Fatalf("vip and gold = %v", got)
	}
	// JSON Lines and Upsert take emails too.
	r2, err := s.ImportJSONL(ctx, strings.NewReader(`{"email": "bob@example.com", "phone": "+66 81 900 0002"}`+"\n"+`{"email": "cat@example.com"}`+"\n"), ImportOptions{})
	if err != nil || r2.Updated != 1 || r2.Created != 1 {
		t.Fatalf("JSONL: %+v, %v", r2, err)
	}
	ids, err := s.Upsert(ctx, []Contact{{Email: "Cat@Example.com", Name: "Cat"}, {Email: "dan@example.com", Country: "ID"}})
	if err != nil {
		t.Fatal(err)
	}
	if cat, _ := s.LookupEmail(ctx, "cat@example.com"); ids[0] != cat || mustProfile(t, s, cat).Name != "Cat" {
		t.Fatalf("Upsert ids %v, cat %d", ids, cat)
	}
	if d := mustProfile(t, s, ids[1]); d.Country != "ID" || d.Email != "dan@example.com" {
		t.Fatalf("dan = %+v", d)
	}
	if _, err := s.Lookup(ctx, "nobody@example.com"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Lookup of an unknown email: %v", err)
	}
	if _, err := s.LookupEmail(ctx, "not an email"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("LookupEmail of a non-address: %v", err)
	}
}

func TestEmailRejects(t *testing.T) {
	s, _, _ := newStore(t)
	body := "phone,email,name\n" +
		"+66819100001,ok@example.com,\n" +
		",nobody,\n" +
		",,X\n" +
		",\"Ann <ann@example.com>\",\n" +
		"+66819100002,,\n" +
		",,\n"
	rep := importString(t, s, body, ImportOptions{})
	want := []struct {
		line   int
		reason string
	}{{3, "invalid email"}, {4, "phone is missing"}, {5, "invalid email"}}
	if rep.Created != 2 || len(rep.Rejects) != len(want) {
		t.Fatalf("report %+v", rep)
	}
	for i, w := range want {
		if r := rep.Rejects[i]; r.Line != w.line || r.Reason != w.reason {
			t.Errorf("reject %d = %v, want line %d %s", i, r, w.line, w.reason)
		}
	}
	if !strings.Contains(rep.Rejects[1].Hint, "or an email address") {
		t.Errorf("hint %q does not mention email", rep.Rejects[1].Hint)
	}
	if _, err := s.ImportCSV(context.Background(), strings.NewReader("name\nAnn\n"), ImportOptions{}); err == nil || !strings.Contains(err.Error(), "or give an email column") {
		t.Fatalf("a header without phone or email: %v", err)
	}
	if _, err := s.ImportCSV(context.Background(), strings.NewReader("ann@example.com,Ann\n"), ImportOptions{}); err == nil || !strings.Contains(err.Error(), "looks like a row of data") {
		t.Fatalf("a file without header: %v", err)
	}
}

// A phone and an email that already name two contacts: the row is rejected with its
// line, nothing changes, and the rows around it are imported.
func TestIdentityConflict(t *testing.T) {
	s, rdb, prefix := newStore(t)
	ctx := context.Background()
	importString(t, s, "phone,email\n+66819200001,\n,b@example.com\n", ImportOptions{})
	before := snapshot(t, rdb, prefix)
	for _, lookFirst := range []bool{true, false} {
		rep := importString(t, s, "phone,email,name\n+66819200001,b@example.com,X\n", ImportOptions{})
		if rep.Rejected != 1 || rep.Rejects[0].Line != 2 || rep.Rejects[0].Reason != "phone and email belong to different contacts" || rep.Rejects[0].Hint == "" {
			t.Fatalf("lookFirst %v: report %+v", lookFirst, rep)
		}
		if d := diffSnapshots(before, snapshot(t, rdb, prefix)); len(d) > 0 {
			t.Fatalf("a conflicting row changed Redis: %v", d)
		}
		// The same through the linking paths alone.
		for _, link := range []func(context.Context, []identity) ([]int64, error){s.link, s.linkScript} {
			out, err := link(ctx, []identity{{phone: "+66819200001", email: "b@example.com"}})
			if err != nil || len(out) != 1 || out[0] != 0 {
				t.Fatalf("link = %v, %v, want a conflict (0)", out, err)
			}
		}
	}
	// Within one batch: the row naming both after each was linked to its own contact.
	rep := importString(t, s, "phone,email\n+66819200005,\n,f@example.com\n+66819200005,f@example.com\n+66819200006,\n", ImportOptions{})
	if rep.Created != 3 || rep.Rejected != 1 || rep.Rejects[0].Line != 4 {
		t.Fatalf("report %+v", rep)
	}
	_, err := s.Upsert(ctx, []Contact{{Phone: "+66819200001", Email: "b@example.com"}, {Phone: "+66819200007"}})
	if !errors.Is(err, ErrIdentityConflict) || !strings.Contains(err.Error(), "contact 1") {
		t.Fatalf("Upsert of a conflict: %v", err)
	}
	mustLookup(t, s, "+66819200007") // the other contact was written
}

// A contact found by its email with another phone takes the new phone; the old one
// stops finding it (and can start a contact of its own).
func TestIdentityChanges(t *testing.T) {
	s, rdb, _ := newStore(t)
	ctx := context.Background()
	importString(t, s, "phone,email\n+66819300001,a@example.com\n", ImportOptions{})
	id := mustLookup(t, s, "+66819300001")
	rep := importString(t, s, "phone,email\n+66819300002,a@example.com\n", ImportOptions{})
	if rep.Updated != 1 {
		t.Fatalf("report %+v", rep)
	}
	if got := mustLookup(t, s, "+66819300002"); got != id {
		t.Fatalf("new phone finds %d, want %d", got, id)
	}
	if _, err := s.LookupPhone(ctx, "+66819300001"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("the old phone still finds a contact: %v", err)
	}
	// And the other way: a new email for a contact found by phone.
	importString(t, s, "phone,email\n+66819300002,b@example.com\n", ImportOptions{})
	if got, err := s.LookupEmail(ctx, "b@example.com"); err != nil || got != id {
		t.Fatalf("new email finds %d, %v", got, err)
	}
	if _, err := s.LookupEmail(ctx, "a@example.com"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("the old email still finds a contact: %v", err)
	}
	// In one batch: the first row's phone is replaced by the second's.
	importString(t, s, "phone,email\n+66819300003,c@example.com\n+66819300004,c@example.com\n", ImportOptions{})
	c, _ := s.LookupEmail(ctx, "c@example.com")
	if p := mustProfile(t, s, c); p.Phone != "+66819300004" {
		t.Fatalf("profile %+v", p)
	}
	if _, err := s.LookupPhone(ctx, "+66819300003"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("the replaced phone still finds a contact: %v", err)
	}
	if n := len(identEntries(t, rdb, s, false)); n != 2 {
		t.Fatalf("phone index has %d entries, want 2", n)
	}
}

func TestEraseByEmail(t *testing.T) {
	s, rdb, prefix := newStore(t)
	ctx := context.Background()
	importString(t, s, "phone,email,tags\n+66819400001,Gone@Example.com,vip\n+66819400002,stay@example.com,vip\n", ImportOptions{})
	id := mustLookup(t, s, "+66819400001")
	led := &erasureRecorder{}
	er, err := s.EraseContact(ctx, "GONE@example.com", led)
	if err != nil || er.ContactID != id || !slices.Equal(led.ids, []uint32{id}) {
		t.Fatalf("EraseContact = %+v, %v", er, err)
	}
	for k, v := range snapshot(t, rdb, prefix) {
		if strings.Contains(strings.ToLower(v+k), "gone@example.com") || strings.Contains(v+k, "+66819400001") {
			t.Fatalf("%s still holds the erased contact's identity: %q", k, v)
		}
	}
	if got := members(t, s, "vip"); len(got) != 1 || got[0] == id {
		t.Fatalf("vip = %v", got)
	}
	// Erasing by phone removes the email too.
	if _, err := s.EraseContact(ctx, "+66819400002", led); err != nil {
		t.Fatal(err)
	}
	if _, err := s.LookupEmail(ctx, "stay@example.com"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("the email of a contact erased by phone: %v", err)
	}
	if _, err := s.EraseContact(ctx, "gone@example.com", led); !errors.Is(err, ErrNotFound) {
		t.Fatalf("erasing twice: %v", err)
	}
}

func TestPhoneIDsTakeEmails(t *testing.T) {
	s, _, _ := newStore(t)
	importString(t, s, "phone,email\n+66819500001,a@example.com\n,b@example.com\n", ImportOptions{})
	ids, rejects, err := s.PhoneIDs(context.Background(), []string{"A@example.com", "b@example.com", "c@example.com", "x@", "0819500001"}, "TH")
	if err != nil {
		t.Fatal(err)
	}
	if ids.GetCardinality() != 2 || len(rejects) != 2 || rejects[0].Reason != "no such contact" || rejects[0].Line != 3 || rejects[1].Reason != "invalid email" {
		t.Fatalf("PhoneIDs = %v, %+v", ids.ToArray(), rejects)
	}
}

// The transaction and the script link identities alike: same ids, same conflicts, ids
// dense, on random batches of phones and emails that repeat and overlap.
func TestLinkPathsAgree(t *testing.T) {
	_, rdb, prefix := newStore(t)
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(9, 9))
	tx, script := NewStore(rdb, prefix+"tx:"), NewStore(rdb, prefix+"script:")
	for range 30 {
		ids := make([]identity, 1+rng.IntN(40))
		for i := range ids {
			if rng.IntN(4) > 0 {
				ids[i].phone = fmt.Sprintf("+6681960%04d", rng.IntN(60))
			}
			if ids[i].phone == "" || rng.IntN(3) == 0 {
				ids[i].email = fmt.Sprintf("u%d@example.com", rng.IntN(60))
			}
		}
		a, err := tx.link(ctx, ids)
		if err != nil {
			t.Fatal(err)
		}
		b, err := script.linkScript(ctx, ids)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(a, b) {
			t.Fatalf("identities %v:\ntransaction %v\nscript      %v", ids, a, b)
		}
	}
	for _, k := range []func(*Store) string{(*Store).kSeq} {
		if x, y := rdb.Get(ctx, k(tx)).Val(), rdb.Get(ctx, k(script)).Val(); x != y || x == "" {
			t.Fatalf("counters %s and %s", x, y)
		}
	}
	for _, email := range []bool{false, true} {
		x, y := identEntries(t, rdb, tx, email), identEntries(t, rdb, script, email)
		if len(x) == 0 || fmt.Sprint(x) != fmt.Sprint(y) {
			t.Fatalf("indexes differ:\n%v\n%v", x, y)
		}
	}
}

// Concurrent importers of the same people, known by phone in some files and by email
// in others: one contact each, ids dense.
func TestConcurrentImportersByEmail(t *testing.T) {
	s, rdb, _ := newStore(t)
	const importers, people = 4, 300
	var wg sync.WaitGroup
	errs := make(chan error, importers)
	for w := range importers {
		var b strings.Builder
		b.WriteString("phone,email\n")
		for i := range people {
			n := (i*7 + w*131) % people
			switch w % 2 {
			case 0:
				fmt.Fprintf(&b, "+66 81 970 %04d,p%d@example.com\n", n, n)
			default:
				fmt.Fprintf(&b, ",P%d@example.com\n", n)
			}
		}
		wg.Go(func() {
			_, err := s.ImportCSV(context.Background(), strings.NewReader(b.String()), ImportOptions{BatchSize: 25})
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
	if seq := rdb.Get(ctx, s.kSeq()).Val(); seq != fmt.Sprint(people) {
		t.Fatalf("counter = %s, want %d (one contact a person, dense ids)", seq, people)
	}
	for i := range people {
		id, err := s.LookupEmail(ctx, fmt.Sprintf("p%d@example.com", i))
		if err != nil {
			t.Fatal(err)
		}
		if p := mustProfile(t, s, id); p.Phone != fmt.Sprintf("+6681970%04d", i) {
			t.Fatalf("person %d is %+v", i, p)
		}
	}
}

// The time zone defaults from the phone's number, else from the country when it has
// one zone; a zone given wins, and a stored zone is kept.
func TestTimeZoneDefaults(t *testing.T) {
	s, _, _ := newStore(t)
	ctx := context.Background()
	body := "phone,email,country,tz\n" +
		"+66819600001,,,\n" + // Thailand: one zone
		"+49 151 23456789,,,\n" + // Germany
		"+1 212 555 0123,,,\n" + // New York
		"+62 21 1234567,,,\n" + // Jakarta landline
		",th@example.com,TH,\n" + // no phone: the country's zone
		",us@example.com,US,\n" + // several zones: none
		",gb@example.com,GB,\n" + // the main zone of several
		",x@example.com,,\n" + // nothing to go by
		"+66819600002,,,Asia/Tokyo\n" // given
	rep := importString(t, s, body, ImportOptions{})
	if rep.Created != 9 {
		t.Fatalf("report %+v", rep)
	}
	for who, want := range map[string]string{"+66819600001": "Asia/Bangkok", "+4915123456789": "Europe/Berlin", "+12125550123": "America/New_York",
		"+62211234567": "Asia/Jakarta", "th@example.com": "Asia/Bangkok", "us@example.com": "", "gb@example.com": "Europe/London",
		"x@example.com": "", "+66819600002": "Asia/Tokyo"} {
		id, err := s.Lookup(ctx, who)
		if err != nil {
			t.Fatal(err)
		}
		if c := mustProfile(t, s, id); c.TimeZone != want {
			t.Errorf("%s: time zone %q, want %q", who, c.TimeZone, want)
		}
	}
	// A stored zone is kept when a row brings none; a row's zone replaces it.
	importString(t, s, "phone,tz\n+66819600002,\n", ImportOptions{})
	if c := mustProfile(t, s, mustLookup(t, s, "+66819600002")); c.TimeZone != "Asia/Tokyo" {
		t.Fatalf("zone after a row without one: %q", c.TimeZone)
	}
	importString(t, s, "email,country\nus@example.com,TH\n", ImportOptions{})
	if id, _ := s.LookupEmail(ctx, "us@example.com"); mustProfile(t, s, id).TimeZone != "Asia/Bangkok" {
		t.Fatalf("zone after the country became TH: %+v", mustProfile(t, s, id))
	}
}

// A phone a contact gives up in one batch starts a contact of its own in the next,
// although the next batch's identities are resolved while the first is still being
// written: in batches of one row, many times over.
func TestIdentityGivenUpAcrossBatches(t *testing.T) {
	_, rdb, prefix := newStore(t)
	ctx := context.Background()
	for i := range 30 {
		s := NewStore(rdb, fmt.Sprintf("%sgiveup%d:", prefix, i))
		x, y := fmt.Sprintf("+668195%05d", 2*i), fmt.Sprintf("+668195%05d", 2*i+1)
		var b strings.Builder
		b.WriteString("phone,email,name\n")
		fmt.Fprintf(&b, "%s,d@example.com,\n", x)
		fmt.Fprintf(&b, "%s,d@example.com,\n", y)
		fmt.Fprintf(&b, "%s,,Second\n", x)
		rep, err := s.ImportCSV(ctx, strings.NewReader(b.String()), ImportOptions{BatchSize: 1})
		if err != nil {
			t.Fatal(err)
		}
		if rep.Created != 2 || rep.Updated != 1 {
			t.Fatalf("round %d: report %+v", i, rep)
		}
		first, err := s.LookupEmail(ctx, "d@example.com")
		if err != nil {
			t.Fatal(err)
		}
		if p := mustProfile(t, s, first); p.Phone != y {
			t.Fatalf("round %d: the first contact has phone %s, want %s", i, p.Phone, y)
		}
		if got := mustLookup(t, s, y); got != first {
			t.Fatalf("round %d: %s finds %d, want %d", i, y, got, first)
		}
		second := mustLookup(t, s, x)
		if p := mustProfile(t, s, second); second == first || p.Name != "Second" || p.Email != "" {
			t.Fatalf("round %d: %s finds contact %d %+v (first %d)", i, x, second, p, first)
		}
	}
}
