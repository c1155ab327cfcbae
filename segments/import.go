package segments

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"unicode/utf8"

	"github.com/RoaringBitmap/roaring/v2"
)

const (
	defaultBatch = 4000
	maxBatch     = 10000
	maxRejects   = 1000 // kept in ImportReport.Rejects
	maxValueLen  = 200  // of Reject.Value
)

// ConsentRow is an import row that said whether the contact opted in. Segments does not
// own consent: it hands these rows to a ConsentSink.
type ConsentRow struct {
	ContactID uint32
	Phone     string // E.164, "" when the row gave only an email
	Email     string // "" when not given
	Line      int    // physical line in the file
	OptedIn   bool
}

// ConsentSink receives the consent rows of an import, batch by batch, after the
// batch's contacts exist. An error stops the import.
type ConsentSink interface {
	ImportConsent(ctx context.Context, rows []ConsentRow) error
}

// ImportOptions configures ImportCSV and ImportJSONL.
type ImportOptions struct {
	// DefaultRegion is the ISO 3166 region of numbers written without a country code
	// ("081 234 5678" with "TH"). Empty: such numbers are rejected. A row's country
	// column, when set, overrides it for that row.
	DefaultRegion string
	// Source names where the contacts came from (a file name, "crm-export"); it is
	// stored on contacts the import creates.
	Source string
	// BatchSize is how many rows go to Redis per round trip (default 4,000, at most 10,000).
	BatchSize int
	// Consent receives the rows that had an opted_in value; nil ignores them.
	Consent ConsentSink
	// Progress, when set, is called after each batch with the rows and bytes read so far.
	Progress func(rows int64, bytes int64)
	// Columns maps file columns (case-insensitive) to fields: phone, name, email,
	// country, locale, timezone, tags, opted_in, or any other name for a custom
	// attribute; "-" ignores the column. Unmapped columns are recognized by name.
	Columns map[string]string
	// AddTags are added to every imported contact; RemoveTags are taken off every
	// imported contact, and win over tags the rows give.
	AddTags, RemoveTags []string

	format int // formatCSV or formatJSONL, set by ImportCSV and ImportJSONL
}

const (
	formatCSV = iota
	formatJSONL
)

// recordSource yields the records of a file, and the layout of a run of them.
type recordSource interface {
	read() (record, error)
	// layout returns the layout of records read so far (JSONL completes their fields).
	layout(recs []record) *layout
	bytesRead() int64
}

type csvSource struct {
	rr  *recordReader
	lay *layout
}

func (c csvSource) read() (record, error)   { return c.rr.read() }
func (c csvSource) layout([]record) *layout { return c.lay }
func (c csvSource) bytesRead() int64        { return c.rr.src.bytes }

// Reject is an import row that was not imported.
type Reject struct {
	Line   int    `json:"line"`             // physical line in the file (the header is line 1)
	Reason string `json:"reason"`           // short and stable: "invalid phone", "phone is missing", …
	Value  string `json:"value,omitempty"`  // the offending value, if any
	Column string `json:"column,omitempty"` // the column it was in, as the header names it, if any
	Hint   string `json:"hint,omitempty"`   // what to do about it
}

func (r Reject) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "line %d: %s", r.Line, r.Reason)
	if r.Value != "" {
		fmt.Fprintf(&b, " %q", r.Value)
	}
	if r.Column != "" {
		fmt.Fprintf(&b, " in column %q", r.Column)
	}
	if r.Hint != "" {
		b.WriteString(": " + r.Hint)
	}
	return b.String()
}

// ImportReport counts what an import did with each row: Read = Created + Updated +
// Unchanged + Rejected. Blank lines are not rows. A file naming one phone twice counts
// the second row as Updated or Unchanged.
type ImportReport struct {
	Read      int64    `json:"read"`
	Created   int64    `json:"created"`
	Updated   int64    `json:"updated"`
	Unchanged int64    `json:"unchanged"`
	Rejected  int64    `json:"rejected"`
	Rejects   []Reject `json:"rejects"` // the first 1,000
}

// Fields a column can hold.
type colKind int

const (
	colIgnore colKind = iota
	colPhone
	colName
	colEmail
	colCountry
	colLocale
	colTZ
	colTags
	colOptIn
	colTelegram
	colLine
	colAttr
)

var kindNames = map[colKind]string{colPhone: "phone", colName: "name", colEmail: "email", colCountry: "country",
	colLocale: "locale", colTZ: "timezone", colTags: "tags", colOptIn: "opted_in", colTelegram: "telegram_chat_id", colLine: "line_user_id"}

// aliases maps normalized header names to fields.
var aliases = map[string]colKind{
	"phone": colPhone, "phone_number": colPhone, "mobile": colPhone, "msisdn": colPhone, "whatsapp": colPhone,
	"mobile_number": colPhone, "whatsapp_number": colPhone,
	"name": colName, "first_name": colName, "full_name": colName,
	"email": colEmail, "e_mail": colEmail, "email_address": colEmail,
	"country": colCountry,
	"locale":  colLocale, "language": colLocale,
	"timezone": colTZ, "tz": colTZ, "time_zone": colTZ,
	"tags": colTags, "labels": colTags,
	"opted_in": colOptIn, "optin": colOptIn, "opt_in": colOptIn, "consent": colOptIn, "whatsapp_opt_in": colOptIn,
	"telegram_chat_id": colTelegram, "telegram": colTelegram, "telegram_id": colTelegram,
	"line_user_id": colLine, "line": colLine, "line_id": colLine,
}

// layout is what each column of a file holds.
type layout struct {
	names []string // as the header writes them
	kinds []colKind
	attrs []string // attribute name of colAttr columns
	col   [colAttr]int
}

func newLayout(header []string, columns map[string]string) (*layout, error) {
	return buildLayout(header, columns, true)
}

// buildLayout is newLayout; a partial layout (JSONL keys seen so far) may lack the
// phone and columns the mapping names.
func buildLayout(header []string, columns map[string]string, strict bool) (*layout, error) {
	l := &layout{names: header, kinds: make([]colKind, len(header)), attrs: make([]string, len(header))}
	for i := range l.col {
		l.col[i] = -1
	}
	mapped := map[string]string{}
	for k, v := range columns {
		mapped[normName(k)] = v
	}
	used := map[string]bool{}
	attrAt := map[string]int{}
	for i, h := range header {
		if !utf8.ValidString(h) {
			return nil, errors.New("line 1: the header is not valid UTF-8: save the file as \"CSV UTF-8\"")
		}
		h = strings.TrimSpace(h)
		l.names[i] = h
		n := normName(h)
		target, isMapped := mapped[n]
		if isMapped {
			used[n] = true
		} else {
			target = n
		}
		target = strings.TrimSpace(target)
		if n == "" && !isMapped || target == "-" || target == "" {
			continue // an unnamed column (a trailing delimiter), or ignored on purpose
		}
		kind, ok := aliases[normName(target)]
		if !ok {
			kind = colAttr
			a := normName(target)
			if !validAttrName(a) {
				return nil, fmt.Errorf("line 1, column %d %q: a custom attribute name may use letters a-z, digits and _ (up to %d): rename the column, or map it with Columns", i+1, h, maxNameLen)
			}
			if j, dup := attrAt[a]; dup {
				return nil, fmt.Errorf("line 1: columns %d %q and %d %q both name attribute %q: rename or ignore one", j+1, header[j], i+1, h, a)
			}
			attrAt[a] = i
			l.attrs[i] = a
		} else if j := l.col[kind]; j >= 0 {
			return nil, fmt.Errorf("line 1: columns %d %q and %d %q both hold %s: map one of them to another field or to \"-\" with Columns", j+1, header[j], i+1, h, kindNames[kind])
		} else {
			l.col[kind] = i
		}
		l.kinds[i] = kind
	}
	if !strict {
		return l, nil
	}
	for k := range mapped {
		if !used[k] {
			return nil, fmt.Errorf("column mapping names %q, but the header has no such column (it has %s)", k, strings.Join(header, ", "))
		}
	}
	if l.col[colPhone] < 0 && l.col[colEmail] < 0 && l.col[colTelegram] < 0 && l.col[colLine] < 0 {
		for _, h := range header {
			if _, err := parsePhone(h, "US"); err == nil || strings.HasPrefix(strings.TrimSpace(h), "+") || strings.Contains(h, "@") {
				return nil, fmt.Errorf("line 1 looks like a row of data (%q), not a header: add a first line naming the columns, such as phone,name,tags", h)
			}
		}
		return nil, fmt.Errorf("line 1: no phone column among %s: name it phone (or phone_number, mobile, msisdn, whatsapp), or give an email column (or a telegram_chat_id or line_user_id one), or map one with Columns", strings.Join(header, ", "))
	}
	return l, nil
}

// rowConfig is what parsing a row needs besides the row.
type rowConfig struct {
	region string // default region
	zones  *zoneCache
}

func clip(s string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	if len(s) <= maxValueLen {
		return s
	}
	i := maxValueLen
	for i > 0 && !utf8.RuneStart(s[i]) {
		i--
	}
	return s[:i] + "…"
}

// parse turns a record into a row. blank is true for a record with no value at all (a
// blank line, or only delimiters), which is skipped rather than counted.
func (l *layout) parse(rec record, c *rowConfig) (r row, rej *Reject, blank bool) {
	r.line, r.optIn = rec.line, -1
	if rec.bad != "" {
		return r, &Reject{Line: rec.line, Reason: "malformed row", Hint: rec.bad}, false
	}
	blank = true
	for _, f := range rec.fields {
		if strings.TrimSpace(f) != "" {
			blank = false
			break
		}
	}
	if blank {
		return r, nil, true
	}
	if len(rec.fields) != len(l.kinds) {
		return r, &Reject{Line: rec.line, Reason: fmt.Sprintf("wrong number of fields (got %d, header has %d)", len(rec.fields), len(l.kinds)),
			Hint: "quote values that contain the delimiter, and give every row as many fields as the header"}, false
	}
	for i, f := range rec.fields {
		if !utf8.ValidString(f) {
			return r, &Reject{Line: rec.line, Reason: "invalid UTF-8", Value: clip(f), Column: l.names[i],
				Hint: "the file is not UTF-8 encoded: save it as \"CSV UTF-8\""}, false
		}
	}
	get := func(k colKind) (string, string) {
		if i := l.col[k]; i >= 0 {
			return strings.TrimSpace(rec.fields[i]), l.names[i]
		}
		return "", ""
	}
	reject := func(reason, value, col, hint string) (row, *Reject, bool) {
		return r, &Reject{Line: rec.line, Reason: reason, Value: clip(value), Column: col, Hint: hint}, false
	}
	region := c.region
	if v, col := get(colCountry); v != "" {
		cc := strings.ToUpper(v)
		if len(cc) != 2 || !knownRegion(cc) {
			return reject("invalid country", v, col, "use a two-letter ISO 3166 code such as TH")
		}
		region, r.country = cc, cc
	}
	ph, col := get(colPhone)
	em, _ := get(colEmail)
	tg, _ := get(colTelegram)
	ln, _ := get(colLine)
	if ph == "" && em == "" && tg == "" && ln == "" {
		hint := "every contact needs a phone number"
		var others []string
		for _, k := range []colKind{colEmail, colTelegram, colLine} {
			if l.col[k] >= 0 {
				others = append(others, map[colKind]string{colEmail: "an email address", colTelegram: "a Telegram chat id", colLine: "a LINE user id"}[k])
			}
		}
		switch len(others) {
		case 0:
		case 1:
			hint = "every contact needs a phone number or " + others[0]
		default:
			hint = "every contact needs a phone number, " + strings.Join(others[:len(others)-1], ", ") + " or " + others[len(others)-1]
		}
		return reject("phone is missing", "", col, hint)
	}
	var err error
	if ph != "" {
		p, err := parsePhone(ph, region)
		if err != nil {
			return reject("invalid phone", ph, col, phoneHint(err, region))
		}
		r.phone = p
		if p.Region != "" {
			r.country = p.Region
		}
	}
	if v, col := get(colOptIn); v != "" {
		b, ok := parseBool(v)
		if !ok {
			return reject("invalid opted_in value", v, col, "use yes/no, true/false, y/n, t/f or 1/0, or leave it empty")
		}
		r.optIn = b
	}
	r.name, _ = get(colName)
	if v, col := get(colEmail); v != "" {
		if r.email, err = normEmail(v); err != nil {
			return reject("invalid email", v, col, "write a bare address such as name@example.com, or leave it empty")
		}
	}
	if v, col := get(colTelegram); v != "" {
		if r.telegram, err = normTelegram(v); err != nil {
			return reject("invalid telegram chat id", v, col, hintOf(err))
		}
	}
	if v, col := get(colLine); v != "" {
		if r.lineUser, err = normLine(v); err != nil {
			return reject("invalid LINE user id", v, col, hintOf(err))
		}
	}
	if v, col := get(colLocale); v != "" {
		if r.locale, r.lang, err = normLocale(v); err != nil {
			return reject("invalid locale", v, col, "use a language code such as th, en or pt-BR")
		}
	}
	if v, col := get(colTZ); v != "" {
		if !c.zones.valid(v) {
			return reject("invalid time zone", v, col, "use an IANA zone name such as Asia/Bangkok, or leave it empty")
		}
		r.tz = v
	}
	if v, col := get(colTags); v != "" {
		for _, t := range splitTags(v) {
			if strings.TrimSpace(t) == "" {
				continue
			}
			n, err := normTag(t)
			if err != nil {
				return reject("invalid tag", t, col, "tags may use letters a-z, digits, \"_\" and \"-\"")
			}
			r.tags = append(r.tags, n)
		}
	}
	for i, k := range l.kinds {
		if k == colAttr {
			if v := strings.TrimSpace(rec.fields[i]); v != "" {
				r.attrs = append(r.attrs, [2]string{l.attrs[i], v})
			}
		}
	}
	return r, nil, false
}

// hintOf is what an error of normTelegram or normLine says to do.
func hintOf(err error) string {
	var ie *identError
	if errors.As(err, &ie) {
		return ie.hint
	}
	return err.Error()
}

func phoneHint(err error, region string) string {
	switch {
	case errors.Is(err, errNoCountryCode):
		return "the number has no country code: write it as +<country code><number>, or set a default region"
	case region != "":
		return fmt.Sprintf("not a valid number for %s nor in international form (+<country code><number>)", region)
	}
	return "not a valid phone number"
}

// batch is a run of parsed rows handed from the reader to the writer.
type batch struct {
	rows    []row
	rejects []Reject
	read    int64 // rows read, rejected ones included
	bytes   int64 // bytes of the file read so far
	first   int   // first and last physical line
	last    int
}

// ImportCSV imports contacts from a CSV file, streaming: memory stays constant however
// long the file. See the package documentation for the columns and formats accepted.
// Bad rows are rejected (counted, and the first 1,000 reported with line and reason)
// without affecting the others. An error that stops the import (a bad header, Redis
// down, the consent sink failing) is returned with the report of what was done;
// importing the file again is safe and completes it.
func (s *Store) ImportCSV(ctx context.Context, r io.Reader, o ImportOptions) (ImportReport, error) {
	o.format = formatCSV
	return s.importFrom(ctx, r, o)
}

// ImportJSONL imports contacts from JSON Lines: one object per line, whose keys are
// the columns ImportCSV recognizes (or maps with Columns). Values may be strings,
// numbers, booleans or null (not given); an array (of tags) is joined with ";". Rows
// are rejected like CSV rows, with "malformed row" for a line that is not a flat JSON
// object. Memory stays constant however long the file.
func (s *Store) ImportJSONL(ctx context.Context, r io.Reader, o ImportOptions) (ImportReport, error) {
	o.format = formatJSONL
	return s.importFrom(ctx, r, o)
}

func (s *Store) importFrom(ctx context.Context, r io.Reader, o ImportOptions) (ImportReport, error) {
	var rep ImportReport
	var src recordSource
	cfg := rowConfig{region: strings.ToUpper(strings.TrimSpace(o.DefaultRegion)), zones: &zoneCache{}}
	if cfg.region != "" && !knownRegion(cfg.region) {
		return rep, fmt.Errorf("import: default region %q is not a two-letter ISO 3166 code such as TH", o.DefaultRegion)
	}
	size := o.BatchSize
	if size <= 0 {
		size = defaultBatch
	}
	size = min(size, maxBatch)
	add, err := normTags(o.AddTags)
	if err != nil {
		return rep, fmt.Errorf("import: tags to add: %w", err)
	}
	rmList, err := normTags(o.RemoveTags)
	if err != nil {
		return rep, fmt.Errorf("import: tags to remove: %w", err)
	}
	remove := map[string]bool{}
	for _, t := range rmList {
		remove[t] = true
	}
	for _, t := range add {
		if remove[t] {
			return rep, fmt.Errorf("import: tag %q is both added and removed", t)
		}
	}
	if _, err := s.UpgradeLayout(ctx); err != nil {
		return rep, fmt.Errorf("import: %w", err)
	}
	if o.format == formatJSONL {
		src = newJSONLSource(r, o.Columns)
	} else {
		lines := newLineSource(r)
		rr, lay, err := readHeader(lines, o.Columns)
		if err != nil {
			return rep, fmt.Errorf("import: %w", err)
		}
		src = csvSource{rr: rr, lay: lay}
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	defer wg.Wait()
	// Four stages run at once: reading and parsing (readBatches, on every core),
	// resolving a batch's identities (the resolver), merging its rows into the stored
	// profiles (this goroutine), then writing it and handing its consent rows over (the
	// writer). Batches stay in file order through all four. The resolver and the
	// writer each take the batches waiting for them together (waiting), one round
	// trip for all.
	batches := make(chan batch, 1)
	var readErr error
	rctx, stopReading := context.WithCancel(ctx)
	defer stopReading()
	wg.Go(func() {
		defer close(batches)
		readErr = readBatches(rctx, src, &cfg, size, add, batches)
	})
	// The resolver notes how many batches were written when it starts resolving one:
	// the merge checks the batch's contacts against the batches written since (flight).
	resolved := make(chan resolvedBatch, 1)
	var written atomic.Int64
	wg.Go(func() {
		defer close(resolved)
		mostlyNew := false // the previous batch created most of its rows
		seq := 0
		for b := range batches {
			// Batches already waiting are resolved with this one (resolveBatches).
			bs := waiting(b, batches, func(b batch) int { return len(b.rows) })
			if len(bs) > 1 && s.testHookTogether != nil {
				s.testHookTogether("resolve", len(bs))
			}
			rows := make([][]row, len(bs))
			for k := range bs {
				rows[k] = bs[k].rows
			}
			from := int(written.Load())
			bis, err := s.resolveBatches(rctx, rows, !mostlyNew)
			fresh, total := 0, 0
			for k, b := range bs {
				rb := resolvedBatch{b: b, seq: seq, from: from, err: err}
				seq++
				if err == nil {
					rb.ids = bis[k]
					fresh, total = fresh+rb.ids.fresh(), total+len(b.rows)
				}
				select {
				case resolved <- rb:
				case <-rctx.Done():
					return
				}
				if err != nil {
					return
				}
			}
			mostlyNew = fresh > total/2
		}
	})
	writes := make(chan *staged, 1)
	var writeErr error // set by the writer before it closes the failed batch's done
	wg.Go(func() {
		for st := range writes {
			// Batches already waiting are written with this one, in one round trip.
			sts := waiting(st, writes, func(st *staged) int { return len(st.b.rows) })
			if len(sts) > 1 && s.testHookTogether != nil {
				s.testHookTogether("write", len(sts))
			}
			if writeErr == nil {
				ps := make([]*prepared, len(sts))
				for i, st := range sts {
					ps[i] = st.p
				}
				if err := s.write(ctx, ps...); err != nil {
					writeErr = fmt.Errorf("import stopped at lines %d–%d (rows before were imported; importing the file again is safe): %w", sts[0].b.first, sts[len(sts)-1].b.last, err)
				} else {
					for _, st := range sts {
						if writeErr == nil {
							writeErr = s.account(ctx, &rep, st, o)
						}
					}
				}
				if writeErr != nil {
					cancel()
				}
			}
			for _, st := range sts {
				written.Add(1)
				close(st.done)
			}
		}
	})
	fl := &flight{}
	var prepErr error
	for rb := range resolved {
		b, err := rb.b, rb.err
		var p *prepared
		if err == nil {
			fl.seq, fl.from = rb.seq, rb.from
			mostlyNew := rb.ids.fresh() > len(b.rows)/2
			p, err = s.prepareResolved(ctx, b.rows, applyOpts{source: o.Source, remove: remove, mostlyNew: mostlyNew}, fl, rb.ids)
		}
		if err != nil {
			prepErr = fmt.Errorf("import stopped at lines %d–%d (rows before were imported; importing the file again is safe): %w", b.first, b.last, err)
			break
		}
		st := &staged{b: b, p: p, done: make(chan struct{})}
		fl.add(st)
		writes <- st
	}
	stopReading() // if the loop stopped early
	for range resolved {
	}
	for range batches {
	}
	close(writes)
	wg.Wait()
	switch {
	case writeErr != nil:
		return rep, writeErr
	case prepErr != nil:
		return rep, prepErr
	case readErr != nil:
		return rep, fmt.Errorf("import: %w", readErr)
	}
	return rep, nil
}

// togetherRows is how many rows an import resolves, or writes, together at most
// (unless a batch alone has more): each stage's transaction runs in Redis in one go
// and must not hold other clients up for long. With the default batch of 4,000 rows
// each batch goes alone; smaller batches share round trips.
const togetherRows = 4000

// waiting returns first and the batches ch holds already while they hold fewer than
// togetherRows rows in all: a stage that falls behind takes the batches waiting for
// it together, so that they share its round trips to Redis.
func waiting[T any](first T, ch <-chan T, rows func(T) int) []T {
	vs, n := []T{first}, rows(first)
	for n < togetherRows {
		select {
		case v, ok := <-ch:
			if !ok {
				return vs
			}
			vs, n = append(vs, v), n+rows(v)
		default:
			return vs
		}
	}
	return vs
}

// resolvedBatch is a batch whose identities are resolved: the seq-th batch of the
// import, resolved when the first from batches were written.
type resolvedBatch struct {
	b         batch
	seq, from int
	ids       *batchIdents
	err       error
}

// staged is a batch between the stages of an import: parsed and prepared, and closed
// done once written and accounted for.
type staged struct {
	b    batch
	p    *prepared
	done chan struct{}
}

// flight is what prepare knows of the batches prepared before it that were not yet
// written when its batch was resolved (an inflight): only the goroutine that
// prepares uses it. A batch resolved while an earlier one was being written may hold
// identities that write changed (a phone a contact gave up), so its contacts are
// checked against every batch from the first one then unwritten, written since or not.
type flight struct {
	queue []*staged
	ids   []*roaring.Bitmap // the contacts of each batch of the queue
	// The batch being prepared is the seq-th; batches before the from-th were written
	// when it was resolved.
	seq, from int
}

func (f *flight) add(st *staged) {
	f.queue = append(f.queue, st)
	bm := roaring.BitmapOf(st.p.contacts...)
	bm.RunOptimize() // an import's new contacts have consecutive ids
	f.ids = append(f.ids, bm)
}

func (f *flight) busy(ids []uint32) bool {
	// The queue holds batches seq-len(queue) to seq-1: forget those before from,
	// which the batch's resolve saw written (so will every later batch's).
	if drop := min(f.from-(f.seq-len(f.queue)), len(f.queue)); drop > 0 {
		f.queue, f.ids = f.queue[drop:], f.ids[drop:]
	}
	for _, bm := range f.ids {
		for _, id := range ids {
			if bm.Contains(id) {
				return true
			}
		}
	}
	return false
}

func (f *flight) drain() error {
	for _, st := range f.queue {
		<-st.done
	}
	f.queue, f.ids = f.queue[:0], f.ids[:0]
	return nil // a failed write cancels the import's context, which prepare sees
}

// account adds a written batch to the report, hands its consent rows to the sink and
// reports progress.
func (s *Store) account(ctx context.Context, rep *ImportReport, st *staged, o ImportOptions) error {
	b, res := &st.b, &st.p.res
	rep.Read += b.read
	rejects := b.rejects
	for i, oc := range res.outcomes {
		switch oc {
		case outCreated:
			rep.Created++
		case outUpdated:
			rep.Updated++
		case outConflict:
			rj := Reject{Line: b.rows[i].line, Reason: "phone and email belong to different contacts", Value: b.rows[i].email,
				Hint: "each already identifies a contact: correct the row, or erase one of the two contacts first"}
			if r := &b.rows[i]; r.telegram != "" || r.lineUser != "" {
				rj.Reason, rj.Value = "identities belong to different contacts", r.ident().String()
			}
			rejects = append(rejects, rj)
		default:
			rep.Unchanged++
		}
	}
	if len(rejects) > len(b.rejects) {
		slices.SortStableFunc(rejects, func(a, b Reject) int { return a.Line - b.Line })
	}
	rep.Rejected += int64(len(rejects))
	for _, rj := range rejects {
		if len(rep.Rejects) < maxRejects {
			rep.Rejects = append(rep.Rejects, rj)
		}
	}
	if o.Consent != nil {
		var cs []ConsentRow
		for i, row := range b.rows {
			if row.optIn >= 0 && res.outcomes[i] != outConflict {
				cs = append(cs, ConsentRow{ContactID: res.ids[i], Phone: row.phone.E164, Email: row.email, Line: row.line, OptedIn: row.optIn == 1})
			}
		}
		if len(cs) > 0 {
			if err := o.Consent.ImportConsent(ctx, cs); err != nil {
				return fmt.Errorf("import stopped at lines %d–%d: record consent (contacts of these lines were imported; importing the file again is safe): %w", b.first, b.last, err)
			}
		}
	}
	if o.Progress != nil {
		o.Progress(rep.Read, b.bytes)
	}
	return nil
}

func normTags(ts []string) ([]string, error) {
	var out []string
	for _, t := range ts {
		n, err := normTag(t)
		if err != nil {
			return nil, err
		}
		if !slices.Contains(out, n) {
			out = append(out, n)
		}
	}
	return out, nil
}

// readHeader reads the header (skipping blank lines before it), detects the encoding
// problems it can and the delimiter, and returns the record reader for the rest.
func readHeader(src *lineSource, columns map[string]string) (*recordReader, *layout, error) {
	for {
		first, err := src.next()
		if err == io.EOF {
			return nil, nil, errors.New("the file is empty: the first line must name the columns, such as phone,name,tags")
		}
		if err != nil {
			return nil, nil, err
		}
		if first.tooLong {
			return nil, nil, fmt.Errorf("line %d: the header is longer than %d bytes", first.n, maxLineBytes)
		}
		b := first.b
		if first.n == 1 {
			if bytes.HasPrefix(b, []byte{0xFF, 0xFE}) || bytes.HasPrefix(b, []byte{0xFE, 0xFF}) {
				return nil, nil, errors.New("the file is UTF-16 encoded: save it as \"CSV UTF-8\"")
			}
			b = bytes.TrimPrefix(b, []byte("\xEF\xBB\xBF"))
		}
		if len(bytes.TrimSpace(b)) == 0 {
			continue
		}
		if bytes.IndexByte(b, '\r') >= 0 {
			return nil, nil, errors.New("the file uses old Mac line endings (CR): save it with Windows (CRLF) or Unix (LF) line endings")
		}
		rr := &recordReader{src: src, p: recParser{delim: detectDelimiter(b)}}
		src.unread([]physLine{{n: first.n, b: bytes.Clone(b)}})
		rec, err := rr.read()
		if err != nil {
			return nil, nil, err
		}
		if rec.bad != "" {
			return nil, nil, fmt.Errorf("line %d: the header is malformed: %s", rec.line, rec.bad)
		}
		lay, err := newLayout(rec.fields, columns)
		if err != nil {
			return nil, nil, err
		}
		return rr, lay, nil
	}
}

// readBatches reads records, parses them in parallel a batch at a time, and sends the
// batches in file order.
func readBatches(ctx context.Context, src recordSource, cfg *rowConfig, size int, add []string, out chan<- batch) error {
	workers := max(1, min(runtime.GOMAXPROCS(0), 8))
	recs := make([]record, 0, size)
	done := false
	for !done {
		recs = recs[:0]
		for len(recs) < size {
			rec, err := src.read()
			if err == io.EOF {
				done = true
				break
			}
			if err != nil {
				return err
			}
			recs = append(recs, rec)
		}
		if len(recs) == 0 {
			break
		}
		lay := src.layout(recs)
		b := parseBatch(recs, lay, cfg, workers, add)
		b.bytes = src.bytesRead()
		select {
		case out <- b:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// yieldEvery is how many rows a parsing goroutine parses before it yields: parsing
// keeps both cores busy, and the import's other stages, woken by Redis's answers,
// would otherwise wait for a parser's time slice to end (up to 10 ms) before they
// can send the next round trip.
const yieldEvery = 64

// parseBatch parses records with up to workers goroutines; rows and rejects keep file order.
func parseBatch(recs []record, lay *layout, cfg *rowConfig, workers int, add []string) batch {
	type part struct {
		rows    []row
		rejects []Reject
		read    int64
	}
	n := len(recs)
	if n < 256 {
		workers = 1
	}
	// Each worker parses its share of recs into the same share of rows; the parts
	// are then moved together.
	rows := make([]row, n)
	parts := make([]part, workers)
	var wg sync.WaitGroup
	for w := range workers {
		lo, hi := n*w/workers, n*(w+1)/workers
		wg.Go(func() {
			p := &parts[w]
			p.rows = rows[lo:lo:hi]
			for i, rec := range recs[lo:hi] {
				if i%yieldEvery == yieldEvery-1 {
					runtime.Gosched()
				}
				r, rej, blank := lay.parse(rec, cfg)
				switch {
				case blank:
					continue
				case rej != nil:
					p.rejects = append(p.rejects, *rej)
				default:
					r.tags = append(r.tags, add...)
					p.rows = append(p.rows, r)
				}
				p.read++
			}
		})
	}
	wg.Wait()
	b := batch{first: recs[0].line, last: recs[n-1].line, rows: rows[:0]}
	for _, p := range parts {
		b.rows = append(b.rows, p.rows...) // moves rows down within rows
		b.rejects = append(b.rejects, p.rejects...)
		b.read += p.read
	}
	return b
}
