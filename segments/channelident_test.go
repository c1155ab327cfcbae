package segments

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"
)

const (
	lineA = "U4af4980629d8ef6e1cc5d5a27e6bf99c"
	lineB = "U0123456789abcdef0123456789abcdef"
	lineC = "Ufedcba9876543210fedcba9876543210"
)

// identEntriesOf returns every entry of a store's index of a kind, over all its
// buckets, checking each is in the bucket of its value.
func identEntriesOf(t testing.TB, rdb *redis.Client, s *Store, kind int) map[string]string {
	t.Helper()
	out := map[string]string{}
	for b := range uint32(identBuckets) {
		k := s.kIdentBucket(kind, b)
		for x, id := range rdb.HGetAll(context.Background(), k).Val() {
			if identBucket(x) != b {
				t.Fatalf("%s holds %s, of bucket %d", k, x, identBucket(x))
			}
			out[x] = id
		}
	}
	return out
}

// entriesNaming returns the index entries, of every kind, that name contact id.
func entriesNaming(t testing.TB, rdb *redis.Client, s *Store, id uint32) []string {
	t.Helper()
	var out []string
	for k := range idKinds {
		for x, v := range identEntriesOf(t, rdb, s, k) {
			if v == strconv.FormatUint(uint64(id), 10) {
				out = append(out, identKindNames[k]+":"+x)
			}
		}
	}
	slices.Sort(out)
	return out
}

func mustIdentity(t testing.TB, s *Store, channel, id string) uint32 {
	t.Helper()
	c, err := s.LookupIdentity(context.Background(), channel, id)
	if err != nil {
		t.Fatalf("LookupIdentity(%s, %q): %v", channel, id, err)
	}
	return c
}

func TestNormChannelIdentities(t *testing.T) {
	for in, want := range map[string]string{"123456789": "123456789", " 42 ": "42", "-1001234567890": "-1001234567890",
		"9223372036854775807": "9223372036854775807", "-9223372036854775808": "-9223372036854775808"} {
		if got, err := normTelegram(in); err != nil || got != want {
			t.Errorf("normTelegram(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for in, hint := range map[string]string{"1.23457E+11": "scientific", "1.23457e+11": "scientific", "+123456789": "phone number",
		"0": "digits", "-0": "digits", "0123": "digits", "12 345": "digits", "123.0": "digits", "9223372036854775808": "digits",
		"abc": "digits", "": "empty", "1,234": "digits"} {
		_, err := normTelegram(in)
		var ie *identError
		if !errors.As(err, &ie) || !errors.Is(err, errTelegramID) || !strings.Contains(ie.hint, hint) {
			t.Errorf("normTelegram(%q) = %v, want a reject saying %q", in, err, hint)
		}
	}
	for in, want := range map[string]string{lineA: lineA, " " + lineB + "\t": lineB, strings.ToUpper(lineA): lineA, "u" + lineB[1:]: lineB} {
		if got, err := normLine(in); err != nil || got != want {
			t.Errorf("normLine(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for in, hint := range map[string]string{"C" + lineA[1:]: "group or room", "R" + lineA[1:]: "group or room", lineA[:32]: "32 hex",
		lineA + "0": "32 hex", "Ug" + lineA[2:]: "32 hex", "": "32 hex", "@shop": "32 hex"} {
		_, err := normLine(in)
		var ie *identError
		if !errors.As(err, &ie) || !errors.Is(err, errLineID) || !strings.Contains(ie.hint, hint) {
			t.Errorf("normLine(%q) = %v, want a reject saying %q", in, err, hint)
		}
	}
}

// Telegram and LINE columns, with messy values: the good ones normalized, the bad
// ones rejected with their line, and rows linked to contacts by any identity.
func TestImportChannelIdentities(t *testing.T) {
	s, rdb, _ := newStore(t)
	ctx := context.Background()
	body := "Phone,E-mail,Telegram ID,LINE,Name\n" +
		"+66 81 700 0001,,  123456789 ," + strings.ToUpper(lineA) + ",Ann\n" + // 2: created, LINE id lower-cased
		",,-1001234567890,,Shop group\n" + // 3: a group chat: created
		",,1.23457E+11,,Excel\n" + // 4: rejected
		",,+66817000002,,Phone in the wrong column\n" + // 5: rejected
		",,," + "C" + lineA[1:] + ",A group\n" + // 6: rejected
		",,,,Nobody\n" + // 7: no identity
		",bob@example.com,,  " + lineB + " ,Bob\n" + // 8: created, by email and LINE
		",,123456789,,Ann again\n" + // 9: Ann, by her chat id
		",,," + lineB + ",\n" + // 10: Bob, by his LINE id
		",,123456789," + lineB + ",\n" // 11: Ann's chat id, Bob's LINE id: rejected
	rep := importString(t, s, body, ImportOptions{})
	if rep.Read != 10 || rep.Created != 3 || rep.Rejected != 5 {
		t.Fatalf("report %+v", rep)
	}
	want := []struct {
		line          int
		reason, value string
		hint          string
	}{
		{4, "invalid telegram chat id", "1.23457E+11", "scientific notation"},
		{5, "invalid telegram chat id", "+66817000002", "phone number"},
		{6, "invalid LINE user id", "C" + lineA[1:], "group or room"},
		{7, "phone is missing", "", "a Telegram chat id or a LINE user id"},
		{11, "identities belong to different contacts", "telegram 123456789, line " + lineB, "erase one"},
	}
	for i, w := range want {
		r := rep.Rejects[i]
		if r.Line != w.line || r.Reason != w.reason || r.Value != w.value || !strings.Contains(r.Hint, w.hint) {
			t.Errorf("reject %d = %+v, want %+v", i, r, w)
		}
	}
	if rep.Rejects[0].Column != "Telegram ID" || rep.Rejects[2].Column != "LINE" {
		t.Errorf("reject columns %q, %q", rep.Rejects[0].Column, rep.Rejects[2].Column)
	}
	ann := mustLookup(t, s, "+66817000001")
	for _, q := range [][2]string{{"telegram", "123456789"}, {"line", lineA}, {"line", " " + strings.ToUpper(lineA)}, {"whatsapp", "+66817000001"}, {"sms", "66817000001"}} {
		if id := mustIdentity(t, s, q[0], q[1]); id != ann {
			t.Errorf("%s %s finds %d, want Ann %d", q[0], q[1], id, ann)
		}
	}
	if c := mustProfile(t, s, ann); c.TelegramChatID != "123456789" || c.LineUserID != lineA || c.Name != "Ann again" {
		t.Fatalf("ann = %+v", c)
	}
	bob := mustIdentity(t, s, "email", "Bob@example.com")
	if id := mustIdentity(t, s, "line", lineB); id != bob {
		t.Fatalf("Bob's LINE id finds %d, his email %d", id, bob)
	}
	group := mustIdentity(t, s, "telegram", "-1001234567890")
	if c := mustProfile(t, s, group); c.TelegramChatID != "-1001234567890" || c.Phone != "" || c.Email != "" || c.LineUserID != "" {
		t.Fatalf("group = %+v", c)
	}
	if got := entriesNaming(t, rdb, s, ann); !slices.Equal(got, []string{"line:" + lineA, "phone:+66817000001", "telegram:123456789"}) {
		t.Fatalf("Ann's index entries: %v", got)
	}
	for _, q := range [][2]string{{"telegram", "987"}, {"line", lineC}, {"telegram", "1.2E+3"}, {"line", "nope"}} {
		if _, err := s.LookupIdentity(ctx, q[0], q[1]); !errors.Is(err, ErrUnknownContact) {
			t.Errorf("LookupIdentity(%s, %s) = %v, want ErrUnknownContact", q[0], q[1], err)
		}
	}
	if _, err := s.LookupIdentity(ctx, "fax", "1"); err == nil || errors.Is(err, ErrUnknownContact) {
		t.Errorf("an unknown channel: %v", err)
	}
	// A LINE id Ann's row brings in place of hers replaces it: the old one stops
	// finding her. Importing the file again changes nothing.
	rep = importString(t, s, "telegram_chat_id,line_user_id\n123456789,"+lineC+"\n", ImportOptions{})
	if rep.Updated != 1 {
		t.Fatalf("report %+v", rep)
	}
	if _, err := s.LookupIdentity(ctx, "line", lineA); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Ann's old LINE id: %v", err)
	}
	if got := entriesNaming(t, rdb, s, ann); !slices.Equal(got, []string{"line:" + lineC, "phone:+66817000001", "telegram:123456789"}) {
		t.Fatalf("Ann's index entries: %v", got)
	}
	if rep = importString(t, s, "telegram_chat_id,line_user_id\n123456789,"+lineC+"\n", ImportOptions{}); rep.Unchanged != 1 {
		t.Fatalf("again: %+v", rep)
	}
}

func TestImportJSONLChannelIdentities(t *testing.T) {
	s, _, _ := newStore(t)
	ctx := context.Background()
	body := `{"telegram_chat_id": 555000111, "name": "By number"}` + "\n" +
		`{"telegram_chat_id": "-100200300", "line_user_id": " ` + strings.ToUpper(lineB) + ` "}` + "\n" +
		`{"telegram_chat_id": 1.23457e11}` + "\n" +
		`{"line_user_id": "Cabc", "email": "x@example.com"}` + "\n" +
		`{"line_user_id": null, "telegram_chat_id": null, "name": "nobody"}` + "\n" +
		`{"line_user_id": "` + lineB + `", "phone": "+66 81 700 0009"}` + "\n"
	rep, err := s.ImportJSONL(ctx, strings.NewReader(body), ImportOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Created != 2 || rep.Updated != 1 || rep.Rejected != 3 {
		t.Fatalf("report %+v", rep)
	}
	for i, w := range []struct {
		line   int
		reason string
	}{{3, "invalid telegram chat id"}, {4, "invalid LINE user id"}, {5, "phone is missing"}} {
		if r := rep.Rejects[i]; r.Line != w.line || r.Reason != w.reason {
			t.Errorf("reject %d = %+v, want line %d %s", i, r, w.line, w.reason)
		}
	}
	// The aliases (keys name columns as CSV headers do, once per file).
	for _, keys := range [][2]string{{"telegram", "line"}, {"Telegram ID", "LINE ID"}} {
		line := fmt.Sprintf(`{%q: 6060, %q: %q}`, keys[0], keys[1], lineC) + "\n"
		if rep, err := s.ImportJSONL(ctx, strings.NewReader(line), ImportOptions{}); err != nil || rep.Created+rep.Unchanged != 1 {
			t.Fatalf("keys %v: %+v, %v", keys, rep, err)
		}
	}
	if mustIdentity(t, s, "telegram", "6060") != mustIdentity(t, s, "line", lineC) {
		t.Fatal("the aliases' contact")
	}
	id := mustIdentity(t, s, "telegram", "-100200300")
	if c := mustProfile(t, s, id); c.LineUserID != lineB || c.Phone != "+66817000009" {
		t.Fatalf("contact = %+v", c)
	}
	if c := mustProfile(t, s, mustIdentity(t, s, "telegram", "555000111")); c.Name != "By number" {
		t.Fatalf("contact = %+v", c)
	}
}

func TestUpsertChannelIdentities(t *testing.T) {
	s, _, _ := newStore(t)
	ctx := context.Background()
	ids, err := s.Upsert(ctx, []Contact{{TelegramChatID: " 77 ", Name: "T"}, {LineUserID: lineA, Email: "l@example.com"}})
	if err != nil {
		t.Fatal(err)
	}
	if c := mustProfile(t, s, ids[0]); c.TelegramChatID != "77" || c.Name != "T" {
		t.Fatalf("contact = %+v", c)
	}
	for _, c := range []Contact{{TelegramChatID: "1e5"}, {LineUserID: "U1"}, {Name: "no identity"}} {
		err := c.Validate()
		var ce *ContactError
		if !errors.As(err, &ce) {
			t.Fatalf("Validate(%+v) = %v", c, err)
		}
		want := map[bool]string{true: "telegram_chat_id", false: "line_user_id"}[c.TelegramChatID != ""]
		if c.Name != "" {
			want = "phone"
		}
		if ce.Field != want {
			t.Errorf("Validate(%+v): field %s, want %s", c, ce.Field, want)
		}
	}
	_, err = s.Upsert(ctx, []Contact{{TelegramChatID: "77", LineUserID: lineA}})
	if !errors.Is(err, ErrIdentityConflict) || !strings.Contains(err.Error(), `telegram_chat_id "77"`) {
		t.Fatalf("conflict: %v", err)
	}
}

func TestLinkIdentity(t *testing.T) {
	s, rdb, prefix := newStore(t)
	ctx := context.Background()
	ids, err := s.Upsert(ctx, []Contact{{Phone: "+66817100001", Name: "Ann"}, {Email: "bob@example.com"}})
	if err != nil {
		t.Fatal(err)
	}
	ann, bob := ids[0], ids[1]
	if err := s.LinkIdentity(ctx, ann, "telegram", " 1001 "); err != nil {
		t.Fatal(err)
	}
	if err := s.LinkIdentity(ctx, ann, "LINE", strings.ToUpper(lineA)); err != nil {
		t.Fatal(err)
	}
	if c := mustProfile(t, s, ann); c.TelegramChatID != "1001" || c.LineUserID != lineA || c.Name != "Ann" || c.Phone != "+66817100001" {
		t.Fatalf("ann = %+v", c)
	}
	if mustIdentity(t, s, "telegram", "1001") != ann || mustIdentity(t, s, "line", lineA) != ann {
		t.Fatal("the linked ids do not find Ann")
	}
	// Idempotent: linking again changes nothing.
	before := snapshot(t, rdb, prefix)
	if err := s.LinkIdentity(ctx, ann, "telegram", "1001"); err != nil {
		t.Fatal(err)
	}
	if d := diffSnapshots(before, snapshot(t, rdb, prefix)); len(d) > 0 {
		t.Fatalf("linking again changed Redis: %v", d)
	}
	// Another contact's id is refused, and nothing changes.
	err = s.LinkIdentity(ctx, bob, "telegram", "1001")
	if !errors.Is(err, ErrIdentityTaken) || !strings.Contains(err.Error(), fmt.Sprintf("contact %d has it", ann)) {
		t.Fatalf("taken: %v", err)
	}
	if d := diffSnapshots(before, snapshot(t, rdb, prefix)); len(d) > 0 {
		t.Fatalf("a refused link changed Redis: %v", d)
	}
	// A new id replaces the contact's previous one, whose entry goes.
	if err := s.LinkIdentity(ctx, ann, "telegram", "2002"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.LookupIdentity(ctx, "telegram", "1001"); !errors.Is(err, ErrUnknownContact) {
		t.Fatalf("the replaced chat id: %v", err)
	}
	if got := entriesNaming(t, rdb, s, ann); !slices.Equal(got, []string{"line:" + lineA, "phone:+66817100001", "telegram:2002"}) {
		t.Fatalf("Ann's index entries: %v", got)
	}
	// Now free, the old id goes to Bob.
	if err := s.LinkIdentity(ctx, bob, "telegram", "1001"); err != nil {
		t.Fatal(err)
	}
	if c := mustProfile(t, s, bob); c.TelegramChatID != "1001" || c.Email != "bob@example.com" {
		t.Fatalf("bob = %+v", c)
	}
	for _, tc := range []struct {
		contact     uint32
		channel, id string
		is          error
		mentions    string
	}{
		{999, "telegram", "3003", ErrUnknownContact, "contact 999"},
		{ann, "telegram", "1.2E+3", errTelegramID, "scientific"},
		{ann, "line", "Cabc", errLineID, ""},
		{ann, "whatsapp", "+66817100009", nil, "Upsert"},
		{ann, "fax", "1", nil, "want telegram"},
	} {
		err := s.LinkIdentity(ctx, tc.contact, tc.channel, tc.id)
		if err == nil || tc.is != nil && !errors.Is(err, tc.is) || !strings.Contains(err.Error(), tc.mentions) {
			t.Errorf("LinkIdentity(%d, %s, %s) = %v", tc.contact, tc.channel, tc.id, err)
		}
	}
	if _, err := s.LookupIdentity(ctx, "telegram", "3003"); !errors.Is(err, ErrUnknownContact) {
		t.Fatalf("a failed link left an entry: %v", err)
	}
}

// Concurrent links of one contact leave one id on the channel, and only its entry.
func TestLinkIdentityConcurrent(t *testing.T) {
	s, rdb, _ := newStore(t)
	ctx := context.Background()
	ids, err := s.Upsert(ctx, []Contact{{Phone: "+66817200001"}})
	if err != nil {
		t.Fatal(err)
	}
	errs := make(chan error, 8)
	for i := range 8 {
		go func() { errs <- NewStore(rdb, s.prefix).LinkIdentity(ctx, ids[0], "telegram", strconv.Itoa(5000+i)) }()
	}
	for range 8 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	c := mustProfile(t, s, ids[0])
	if got := identEntriesOf(t, rdb, s, idTelegram); len(got) != 1 || got[c.TelegramChatID] != strconv.Itoa(int(ids[0])) {
		t.Fatalf("record has %q, index %v", c.TelegramChatID, got)
	}
}

func TestCreateWithIdentity(t *testing.T) {
	s, rdb, prefix := newStore(t)
	ctx := context.Background()
	id, err := s.CreateWithIdentity(ctx, "line", " "+lineA+" ", Contact{Name: "LINE friend"})
	if err != nil {
		t.Fatal(err)
	}
	c := mustProfile(t, s, id)
	if c.LineUserID != lineA || c.Name != "LINE friend" || c.Phone != "" || c.Email != "" || c.TelegramChatID != "" {
		t.Fatalf("contact = %+v", c)
	}
	if got := members(t, s, "not nothing"); !slices.Equal(got, []uint32{id}) {
		t.Fatalf("live contacts %v", got)
	}
	// The record names its source: the channel.
	rec := rdb.HGet(ctx, s.kProfiles(profileBucketOf(id)), strconv.Itoa(int(id))).Val()
	if p := mustDecode(t, []byte(rec)); p.get(hSource) != "line" {
		t.Fatalf("source %q", p.get(hSource))
	}
	// Again (a second follow): the same contact, nothing new.
	before := snapshot(t, rdb, prefix)
	again, err := s.CreateWithIdentity(ctx, "line", lineA, Contact{})
	if err != nil || again != id {
		t.Fatalf("again: %d, %v", again, err)
	}
	if d := diffSnapshots(before, snapshot(t, rdb, prefix)); len(d) > 0 {
		t.Fatalf("a second create changed Redis: %v", d)
	}
	tg, err := s.CreateWithIdentity(ctx, "telegram", "424242", Contact{Locale: "th"})
	if err != nil || tg == id || mustIdentity(t, s, "telegram", "424242") != tg {
		t.Fatalf("telegram: %d, %v", tg, err)
	}
	// A phone as WhatsApp reports it (wa_id): the contact is found by it after.
	wa, err := s.CreateWithIdentity(ctx, "whatsapp", "66817600001", Contact{})
	if err != nil || mustLookup(t, s, "+66817600001") != wa {
		t.Fatalf("whatsapp: %d, %v", wa, err)
	}
	if _, err := s.CreateWithIdentity(ctx, "telegram", "1", Contact{TelegramChatID: "2"}); err == nil {
		t.Fatal("a contact with another chat id was taken")
	}
	if _, err := s.CreateWithIdentity(ctx, "telegram", "0", Contact{}); !errors.Is(err, errTelegramID) {
		t.Fatalf("chat id 0: %v", err)
	}
}

// Erasure by a Telegram chat id or a LINE user id removes every identity of the
// contact; by its phone, its channel ids too.
func TestEraseByChannelIdentity(t *testing.T) {
	s, rdb, prefix := newStore(t)
	ctx := context.Background()
	importString(t, s, "phone,email,telegram,line,tags\n"+
		"+66817300001,a@example.com,111,"+lineA+",vip\n"+
		"+66817300002,b@example.com,-222,"+lineB+",vip\n"+
		"+66817300003,c@example.com,333,"+lineC+",vip\n", ImportOptions{})
	led := &erasureRecorder{}
	for i, key := range []string{"telegram:111", "LINE:" + strings.ToUpper(lineB), "+66817300003"} {
		id := mustLookup(t, s, fmt.Sprintf("+6681730000%d", i+1))
		if len(entriesNaming(t, rdb, s, id)) != 4 {
			t.Fatalf("contact %d has entries %v", id, entriesNaming(t, rdb, s, id))
		}
		er, err := s.EraseContact(ctx, key, led)
		if err != nil || er.ContactID != id || er.Tags != 1 {
			t.Fatalf("EraseContact(%s) = %+v, %v", key, er, err)
		}
		if got := entriesNaming(t, rdb, s, id); len(got) != 0 {
			t.Fatalf("after erasing %s, entries %v remain", key, got)
		}
		if _, err := s.EraseContact(ctx, key, led); !errors.Is(err, ErrNotFound) {
			t.Fatalf("erasing %s twice: %v", key, err)
		}
	}
	for k, v := range snapshot(t, rdb, prefix) {
		for _, x := range []string{"111", "222", "333", lineA, lineB, lineC, "@example.com"} {
			if strings.Contains(k, x) || strings.Contains(v, x) {
				t.Fatalf("%s still holds %s: %q", k, x, v)
			}
		}
	}
	if _, err := s.EraseContact(ctx, "telegram:1.5E+3", led); !errors.Is(err, ErrNotFound) {
		t.Fatalf("erasing a bad chat id: %v", err)
	}
	if got := members(t, s, "vip"); len(got) != 0 {
		t.Fatalf("vip = %v", got)
	}
}

// The transaction and the script link identities of every kind alike.
func TestLinkPathsAgreeAllKinds(t *testing.T) {
	_, rdb, prefix := newStore(t)
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(19, 19))
	tx, script := NewStore(rdb, prefix+"tx:"), NewStore(rdb, prefix+"script:")
	conflicts := 0
	for range 30 {
		seen := map[identity]bool{}
		var ids []identity
		for range 1 + rng.IntN(40) {
			var x identity
			for x == (identity{}) {
				if rng.IntN(3) == 0 {
					x.phone = fmt.Sprintf("+6681961%04d", rng.IntN(40))
				}
				if rng.IntN(3) == 0 {
					x.email = fmt.Sprintf("u%d@example.com", rng.IntN(40))
				}
				if rng.IntN(3) == 0 {
					x.telegram = strconv.Itoa(1 + rng.IntN(40))
				}
				if rng.IntN(3) == 0 {
					x.line = fmt.Sprintf("U%032x", rng.IntN(40))
				}
			}
			if !seen[x] { // a batch's identities are distinct
				seen[x] = true
				ids = append(ids, x)
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
		for _, v := range a {
			if v == 0 {
				conflicts++
			}
		}
	}
	if conflicts == 0 {
		t.Fatal("no conflict was exercised")
	}
	if x, y := rdb.Get(ctx, tx.kSeq()).Val(), rdb.Get(ctx, script.kSeq()).Val(); x != y || x == "" {
		t.Fatalf("counters %s and %s", x, y)
	}
	for k := range idKinds {
		x, y := identEntriesOf(t, rdb, tx, k), identEntriesOf(t, rdb, script, k)
		if len(x) == 0 || fmt.Sprint(x) != fmt.Sprint(y) {
			t.Fatalf("%s indexes differ:\n%v\n%v", identKindNames[k], x, y)
		}
	}
}

// A record written before channel identities existed decodes as it did; one with
// them keeps its size small.
func TestRecordChannelIdentities(t *testing.T) {
	old := []byte{recVersion, recPhone, 0xce, 0xc2, 0xf1, 0xe9, 0xf6, 0x01, recName | 8<<4, 'S', 'o', 'm', 'c', 'h', 'a', 'i'}
	p := mustDecode(t, old)
	if p.get(hPhone) == "" || p.get(hName) != "Somchai" || p.get(hTelegram) != "" || p.get(hLine) != "" {
		t.Fatalf("old record: %q", p.f)
	}
	if string(encodeRecord(&p)) != string(old) {
		t.Fatalf("an old record encodes to %q, was %q", encodeRecord(&p), old)
	}
	full := profile{f: []field{{hPhone, "+6281234567890"}, {hName, "Contact 1234567"}, {hCountry, "ID"}, {hTZ, "Asia/Jakarta"},
		{hCreated, "1760000000000"}, {hTelegram, "-1001234567890"}, {hLine, lineA}}}
	rec := encodeRecord(&full)
	if len(rec) > 64 {
		t.Errorf("a record with both channel ids is %d bytes", len(rec))
	}
	if got := mustDecode(t, rec); fmt.Sprint(fieldMap(got)) != fmt.Sprint(fieldMap(full)) {
		t.Fatalf("round trip: %q", got.f)
	}
	// Values not in canonical form are kept as written.
	for _, v := range [][2]string{{hTelegram, "+5"}, {hTelegram, "007"}, {hTelegram, "0"}, {hLine, strings.ToUpper(lineA)}, {hLine, "Uabc"}} {
		p := profile{f: []field{{hEmail, "a@example.com"}, {v[0], v[1]}}}
		if got := mustDecode(t, encodeRecord(&p)); got.get(v[0]) != v[1] {
			t.Errorf("%s %q came back as %q", v[0], v[1], got.get(v[0]))
		}
	}
	for _, bad := range [][]byte{{recVersion, recTelegram, 0}, {recVersion, recTelegram}, {recVersion, recLine, 1, 2}, {recVersion, recLine | 1<<4, 0}} {
		if p, err := decodeRecord(bad); err == nil {
			t.Errorf("decodeRecord(%q) = %q", bad, p.f)
		}
	}
}

// Any string: normTelegram and normLine accept only what they give back unchanged,
// and what they give is stored in the record's compact form.
func FuzzChannelIdentity(f *testing.F) {
	for _, s := range []string{"123456789", " -1001234567890 ", "1.23457E+11", "+1", "0", "-0", "007", "9223372036854775808",
		lineA, strings.ToUpper(lineA), "u" + lineB[1:], "C" + lineA[1:], "", "U"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if v, err := normTelegram(s); err == nil {
			if again, err := normTelegram(v); err != nil || again != v || v != strings.TrimSpace(v) {
				t.Fatalf("normTelegram(%q) = %q, then %q, %v", s, v, again, err)
			}
			rec := encodeRecord(&profile{f: []field{{hTelegram, v}}})
			if p := mustDecode(t, rec); rec[1] != recTelegram || p.get(hTelegram) != v {
				t.Fatalf("chat id %q: record %q", v, rec)
			}
		} else if !errors.Is(err, errTelegramID) {
			t.Fatalf("normTelegram(%q): %v", s, err)
		}
		if v, err := normLine(s); err == nil {
			if again, err := normLine(v); err != nil || again != v || !strings.EqualFold(v, strings.TrimSpace(s)) {
				t.Fatalf("normLine(%q) = %q, then %q, %v", s, v, again, err)
			}
			rec := encodeRecord(&profile{f: []field{{hLine, v}}})
			if p := mustDecode(t, rec); rec[1] != recLine || len(rec) != 18 || p.get(hLine) != v {
				t.Fatalf("LINE id %q: record %q", v, rec)
			}
		} else if !errors.Is(err, errLineID) {
			t.Fatalf("normLine(%q): %v", s, err)
		}
	})
}

func TestPhoneIDsTakeChannelIdentities(t *testing.T) {
	s, _, _ := newStore(t)
	importString(t, s, "telegram,line\n111,\n,"+lineA+"\n", ImportOptions{})
	ids, rejects, err := s.PhoneIDs(context.Background(), []string{"telegram:111", "LINE:" + strings.ToUpper(lineA), "telegram:222", "telegram:1e5", "line:Cabc"}, "")
	if err != nil {
		t.Fatal(err)
	}
	if ids.GetCardinality() != 2 || len(rejects) != 3 || rejects[0].Reason != "no such contact" || rejects[0].Value != "222" ||
		rejects[1].Reason != "invalid telegram chat id" || rejects[2].Reason != "invalid LINE user id" {
		t.Fatalf("PhoneIDs = %v, %+v", ids.ToArray(), rejects)
	}
}
