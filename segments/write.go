package segments

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"
)

// row is one contact update: an import row or an upserted Contact, normalized.
// Empty strings are "not given"; a row has a phone, an email or both.
type row struct {
	line                                   int
	phone                                  phone
	country, name, email, locale, lang, tz string
	tags                                   []string
	attrs                                  [][2]string
	optIn                                  int8 // -1 not given, 0 no, 1 yes
}

// Outcomes of one row.
const (
	outUnchanged = iota
	outCreated
	outUpdated
	outConflict // rejected: its phone and email belong to different contacts
)

type applyOpts struct {
	source    string
	remove    map[string]bool // tags to take off every contact in the batch
	mostlyNew bool            // most rows are expected to create contacts
}

type applyResult struct {
	ids      []uint32 // per row; 0 for a conflict
	outcomes []int8   // per row
}

// field is one profile hash field.
type field struct{ k, v string }

// profile is a contact's hash: as read before the batch, and as the batch leaves it.
// Profiles have a few fields, so slices beat maps.
type profile struct {
	f      []field  // fields other than tag fields
	tags   []string // tags (t.NAME fields)
	legacy bool     // the stored hash has the comma-separated tags field
}

func profileFromHash(h map[string]string) profile {
	p := profile{f: make([]field, 0, len(h))}
	for k, v := range h {
		switch name, isTag := strings.CutPrefix(k, hTag); {
		case isTag:
			p.addTag(name)
		case k == hTags:
			p.legacy = true
			for _, t := range strings.Split(v, ",") {
				if t != "" {
					p.addTag(t)
				}
			}
		default:
			p.f = append(p.f, field{k, v})
		}
	}
	return p
}

func (p *profile) get(k string) string {
	for _, f := range p.f {
		if f.k == k {
			return f.v
		}
	}
	return ""
}

// set changes field k to v when v is given and differs.
func (p *profile) set(k, v string) bool {
	if v == "" {
		return false
	}
	for i := range p.f {
		if p.f[i].k == k {
			if p.f[i].v == v {
				return false
			}
			p.f[i].v = v
			return true
		}
	}
	p.f = append(p.f, field{k, v})
	return true
}

func (p *profile) hasTag(t string) bool { return slices.Contains(p.tags, t) }

func (p *profile) addTag(t string) bool {
	if p.hasTag(t) {
		return false
	}
	p.tags = append(p.tags, t)
	return true
}

// exists reports whether the profile is a contact's (it has an identity).
func (p *profile) exists() bool { return p.get(hPhone) != "" || p.get(hEmail) != "" }

func (p *profile) clone() profile {
	return profile{f: append(make([]field, 0, len(p.f)+4), p.f...), tags: slices.Clone(p.tags), legacy: p.legacy}
}

// merge applies a row to the profile and reports whether anything changed.
func (p *profile) merge(r *row, remove map[string]bool) bool {
	ch := p.set(hPhone, r.phone.E164)
	ch = p.set(hCountry, r.country) || ch
	ch = p.set(hName, r.name) || ch
	ch = p.set(hEmail, r.email) || ch
	ch = p.set(hLocale, r.locale) || ch
	tz := r.tz
	if tz == "" && p.get(hTZ) == "" {
		// The zone of the phone's number, else that of the country, if it has one.
		if tz = r.phone.Zone; tz == "" {
			tz = regionZone(p.get(hCountry))
		}
	}
	ch = p.set(hTZ, tz) || ch
	for _, a := range r.attrs {
		ch = p.set(hAttr+a[0], a[1]) || ch
	}
	for _, t := range r.tags {
		if !remove[t] && p.addTag(t) {
			ch = true
		}
	}
	if len(remove) > 0 {
		n := len(p.tags)
		p.tags = slices.DeleteFunc(p.tags, func(t string) bool { return remove[t] })
		ch = ch || len(p.tags) != n
	}
	return ch
}

// contactWrite is one contact of a batch: its profile before and after the batch,
// and the identities its rows named.
type contactWrite struct {
	id            uint32
	isNew         bool // allocated in this batch: nothing to read
	before, after profile
	phones        []string // named by its rows, and the stored one
	emails        []string
}

// apply writes a batch of rows: prepare, then write.
func (s *Store) apply(ctx context.Context, rows []row, o applyOpts) (applyResult, error) {
	p, err := s.prepare(ctx, rows, o, nil)
	if err != nil {
		return p.res, err
	}
	return p.res, s.write(ctx, p)
}

// prepared is a batch ready to be written: what each row did, and the commands.
type prepared struct {
	res      applyResult
	contacts []uint32 // the batch's contacts
	cmds     []redis.Cmder
}

// inflight tells prepare about batches prepared but not yet written, whose contacts'
// profiles in Redis are not yet what the batch leaves: busy reports whether any of
// ids is in one, and drain waits until all are written.
type inflight interface {
	busy(ids []uint32) bool
	drain() error
}

// prepare resolves a batch's rows to contacts and computes their writes: the ids of
// their identities (one HMGET round trip, and link for unknown identities), the stored
// profiles of contacts that existed (one pipeline), then the merge in row order. When a
// contact is in a batch still being written (fl), prepare waits for it and resolves
// again, so rows always merge into what the rows before them left.
func (s *Store) prepare(ctx context.Context, rows []row, o applyOpts, fl inflight) (*prepared, error) {
	p := &prepared{res: applyResult{ids: make([]uint32, len(rows)), outcomes: make([]int8, len(rows))}}
	if len(rows) == 0 {
		return p, nil
	}
	res := &p.res
	// 1. Ids of the distinct identities, in row order.
	index := make(map[identity]int, len(rows))
	idents := make([]identity, 0, len(rows))
	rowIdent := make([]int, len(rows))
	for j := range rows {
		x := identity{rows[j].phone.E164, rows[j].email}
		i, ok := index[x]
		if !ok {
			i = len(idents)
			index[x] = i
			idents = append(idents, x)
		}
		rowIdent[j] = i
	}
	var found []resolved
	cws := make([]contactWrite, 0, len(idents))
	byID := make(map[uint32]int, len(idents))
	for {
		var err error
		if found, err = s.resolve(ctx, idents, !o.mostlyNew); err != nil {
			return p, fmt.Errorf("resolve contact ids: %w", err)
		}
		// 2. The contacts, in order of first appearance.
		cws = cws[:0]
		clear(byID)
		p.contacts = p.contacts[:0]
		for _, f := range found {
			if f.conflict {
				continue
			}
			if k, ok := byID[f.id]; ok {
				cws[k].isNew = cws[k].isNew || f.isNew
				continue
			}
			byID[f.id] = len(cws)
			cws = append(cws, contactWrite{id: f.id, isNew: f.isNew})
			p.contacts = append(p.contacts, f.id)
		}
		if fl == nil || !fl.busy(p.contacts) {
			break
		}
		if err := fl.drain(); err != nil {
			return p, err
		}
		fl = nil
	}
	// 3. The stored profiles of the contacts that existed.
	pipe := s.rdb.Pipeline()
	reads := make([]*redis.MapStringStringCmd, len(cws))
	for k := range cws {
		if !cws[k].isNew {
			reads[k] = pipe.HGetAll(ctx, s.kContact(cws[k].id))
		}
	}
	if pipe.Len() > 0 {
		if _, err := pipe.Exec(ctx); err != nil {
			return p, fmt.Errorf("read profiles: %w", err)
		}
	}
	for k := range cws {
		cw := &cws[k]
		if cw.isNew {
			cw.after.f = make([]field, 0, 12)
		}
		if reads[k] != nil {
			cw.before = profileFromHash(reads[k].Val())
			cw.after = cw.before.clone()
			if ph := cw.before.get(hPhone); ph != "" {
				cw.phones = append(cw.phones, ph)
			}
			if e := cw.before.get(hEmail); e != "" {
				cw.emails = append(cw.emails, e)
			}
		}
	}
	// 4. Rows in file order, each against the profile the rows before it left.
	for j := range rows {
		f := found[rowIdent[j]]
		if f.conflict {
			res.outcomes[j] = outConflict
			continue
		}
		cw := &cws[byID[f.id]]
		res.ids[j] = f.id
		r := &rows[j]
		if r.phone.E164 != "" && !slices.Contains(cw.phones, r.phone.E164) {
			cw.phones = append(cw.phones, r.phone.E164)
		}
		if r.email != "" && !slices.Contains(cw.emails, r.email) {
			cw.emails = append(cw.emails, r.email)
		}
		existed := cw.after.exists()
		switch changed := cw.after.merge(r, o.remove); {
		case !existed:
			res.outcomes[j] = outCreated
		case changed:
			res.outcomes[j] = outUpdated
		}
	}
	// 5. Bitmaps, then profiles and the index clean-up, then the tag library.
	w := newBatchWriter(s, o.source)
	for k := range cws {
		w.diff(&cws[k])
	}
	p.cmds = w.commands(ctx)
	return p, nil
}

// write runs a prepared batch's commands in one pipeline: Redis runs it in order, so
// bitmaps are written before profiles and a batch cut short leaves profiles that
// still differ from the file: importing it again completes the indexes.
func (s *Store) write(ctx context.Context, p *prepared) error {
	if len(p.cmds) == 0 {
		return nil
	}
	pipe := s.rdb.Pipeline()
	for _, c := range p.cmds {
		_ = pipe.Process(ctx, c)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("write indexes and profiles: %w", err)
	}
	return nil
}

// batchWriter collects a batch's writes: its bit changes (as few BITFIELD operations
// as it can, one command per bitmap), then each contact's HSET and HDEL.
type batchWriter struct {
	s           *Store
	now, source string
	kAll        string
	bits        map[string][]bitOp // bitmap key → changes
	bitOrder    []string
	keys        map[string]string // tag or field:value → bitmap key
	created     []uint32          // contacts created by the batch
	added       map[string]bool   // tags some contact got
	cmds        []redis.Cmder
}

// bitOp sets bit id of a bitmap to v.
type bitOp struct {
	id uint32
	v  bool
}

func newBatchWriter(s *Store, source string) *batchWriter {
	return &batchWriter{s: s, now: strconv.FormatInt(s.now().UnixMilli(), 10), source: source, kAll: s.kAll(),
		bits: map[string][]bitOp{}, keys: map[string]string{}, added: map[string]bool{}}
}

func (w *batchWriter) setBit(key string, id uint32, v bool) {
	ops, ok := w.bits[key]
	if !ok {
		w.bitOrder = append(w.bitOrder, key)
	}
	w.bits[key] = append(ops, bitOp{id, v})
}

// key returns the bitmap key of a tag (field "") or an attribute value, built once a batch.
func (w *batchWriter) key(field, v string) string {
	k, ok := w.keys[field+":"+v]
	if !ok {
		if field == "" {
			k = w.s.kTag(v)
		} else {
			k = w.s.kAttr(field, v)
		}
		w.keys[field+":"+v] = k
	}
	return k
}

// diff queues the writes that turn a contact's before into its after. Each tag is its
// own profile field, so adding and removing tags needs no read-modify-write and
// concurrent importers keep each other's tags.
func (w *batchWriter) diff(cw *contactWrite) {
	s, id := w.s, cw.id
	before, after := &cw.before, &cw.after
	created := !before.exists()
	if created {
		w.created = append(w.created, id)
		w.setBit(w.kAll, id, true)
	}
	var add, rm []string
	for _, t := range after.tags {
		if !before.hasTag(t) {
			add = append(add, t)
		}
	}
	for _, t := range before.tags {
		if !after.hasTag(t) {
			rm = append(rm, t)
		}
	}
	slices.Sort(add)
	slices.Sort(rm)
	for _, t := range add {
		w.setBit(w.key("", t), id, true)
		w.added[t] = true
	}
	for _, t := range rm {
		w.setBit(w.key("", t), id, false)
	}
	w.moveBit(FieldCountry, before.get(hCountry), after.get(hCountry), id)
	w.moveBit(FieldLocale, langOf(before.get(hLocale)), langOf(after.get(hLocale)), id)

	set := make([]any, 0, 2+2*(len(after.f)+len(add)+2))
	set = append(set, "hset", s.kContact(id))
	for _, f := range after.f {
		if before.get(f.k) != f.v {
			set = append(set, f.k, f.v)
		}
	}
	if created {
		set = append(set, hCreated, w.now)
		if w.source != "" {
			set = append(set, hSource, w.source)
		}
	}
	tagFields := add
	if before.legacy {
		tagFields = slices.Sorted(slices.Values(after.tags)) // moving to one field per tag
	}
	for _, t := range tagFields {
		set = append(set, hTag+t, "1")
	}
	if len(set) > 2 {
		w.cmds = append(w.cmds, redis.NewIntCmd(context.Background(), set...))
	}
	var del []any
	for _, t := range rm {
		del = append(del, hTag+t)
	}
	if before.legacy {
		del = append(del, hTags)
	}
	if len(del) > 0 {
		w.cmds = append(w.cmds, redis.NewIntCmd(context.Background(), append([]any{"hdel", s.kContact(id)}, del...)...))
	}
	// Identities the contact no longer has stop finding it.
	if len(cw.phones) > 1 || len(cw.phones) == 1 && cw.phones[0] != after.get(hPhone) {
		w.unlink(s.kIdentPhone(), cw.phones, after.get(hPhone), id)
	}
	if len(cw.emails) > 1 || len(cw.emails) == 1 && cw.emails[0] != after.get(hEmail) {
		w.unlink(s.kIdentEmail(), cw.emails, after.get(hEmail), id)
	}
}

func (w *batchWriter) unlink(key string, named []string, keep string, id uint32) {
	for _, x := range named {
		if x != keep {
			w.cmds = append(w.cmds, redis.NewCmd(context.Background(), "eval", unlinkScript, 1, key, x, id))
		}
	}
}

// moveBit moves a contact's bit from the bitmap of an attribute's old value to the new.
func (w *batchWriter) moveBit(field, old, cur string, id uint32) {
	if old == cur {
		return
	}
	if old != "" {
		w.setBit(w.key(field, old), id, false)
	}
	if cur != "" {
		w.setBit(w.key(field, cur), id, true)
	}
}

// commands returns the batch's commands in the order Redis must run them: the
// bitmaps (contacts:all last, so a contact becomes live with its other bits set), the
// profiles and index clean-up, and the tag library (a tag is listed once it has
// members).
//
// An import creates contacts with consecutive ids, so the bitmaps' bits of a run of
// 64 aligned ids are often all the batch's new contacts': their final values are
// known (1 for each contact with the tag or value, 0 for the others), and one
// BITFIELD SET i64 writes them instead of a SET u1 each.
func (w *batchWriter) commands(ctx context.Context) []redis.Cmder {
	full := fullWords(w.created)
	cmds := make([]redis.Cmder, 0, len(w.bitOrder)+len(w.cmds)+1)
	order := slices.DeleteFunc(slices.Clone(w.bitOrder), func(k string) bool { return k == w.kAll })
	if _, ok := w.bits[w.kAll]; ok {
		order = append(order, w.kAll)
	}
	for _, k := range order {
		cmds = append(cmds, redis.NewIntSliceCmd(ctx, bitfieldArgs(k, w.bits[k], full)...))
	}
	cmds = append(cmds, w.cmds...)
	if len(w.added) > 0 {
		lib := []any{"sadd", w.s.kTags()}
		for _, t := range slices.Sorted(maps.Keys(w.added)) {
			lib = append(lib, t)
		}
		cmds = append(cmds, redis.NewIntCmd(ctx, lib...))
	}
	return cmds
}

// fullWords returns the 64-bit words (id/64) whose 64 ids are all among created.
func fullWords(created []uint32) map[uint32]bool {
	if len(created) < 64 {
		return nil
	}
	ids := slices.Sorted(slices.Values(created))
	full := map[uint32]bool{}
	for i := 0; i+63 < len(ids); {
		word := ids[i] / 64
		if ids[i]%64 == 0 && ids[i+63] == ids[i]+63 {
			full[word] = true
			i += 64
			continue
		}
		i++
	}
	return full
}

// bitfieldArgs is the BITFIELD command setting a bitmap's bits: SET i64 #word for
// each fully known word holding two changes or more, SET u1 for the rest.
func bitfieldArgs(key string, ops []bitOp, full map[uint32]bool) []any {
	args := make([]any, 0, 2+4*len(ops))
	args = append(args, "bitfield", key)
	var words map[uint32]uint64
	var count map[uint32]int
	if len(full) > 0 {
		words, count = map[uint32]uint64{}, map[uint32]int{}
		for _, op := range ops {
			if wd := op.id / 64; full[wd] {
				count[wd]++
				if op.v {
					words[wd] |= 1 << (63 - op.id%64)
				}
			}
		}
	}
	for _, op := range ops {
		wd := op.id / 64
		switch n := count[wd]; {
		case n >= 2:
			args = append(args, "SET", "i64", "#"+strconv.FormatUint(uint64(wd), 10), int64(words[wd]))
			count[wd] = -1 // written
			continue
		case n < 0:
			continue
		}
		v := 0
		if op.v {
			v = 1
		}
		args = append(args, "SET", "u1", op.id, v)
	}
	return args
}

func langOf(locale string) string {
	lang, _, _ := strings.Cut(locale, "-")
	return lang
}
