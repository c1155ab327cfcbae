package segments

import (
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
)

// The storage layout of profiles and the identity index (see the package
// documentation, "Redis keys"): profiles packed into bucket hashes of profileBucket
// contacts, each profile one compact record; the identity index split into
// identBuckets hashes per kind by a hash of the phone or email.

// profileBucket is how many consecutive contact ids share a profile bucket hash: 128,
// Redis's default hash-max-listpack-entries, so a bucket of records of up to 64 bytes
// (hash-max-listpack-value) stays in the compact listpack encoding.
const (
	profileShift  = 7
	profileBucket = 1 << profileShift
)

// identBuckets is how many hashes each identity index (phone, email) is split into.
// A batch of new contacts touches at most identBuckets of them (its transaction
// WATCHes them, and WATCH costs grow with the square of the keys watched), and at 10M
// contacts each holds ~80,000 entries, so no hash ever rehashes millions of entries.
// It is part of the stored layout: changing it requires moving every entry.
const identBuckets = 128

func profileBucketOf(id uint32) uint32 { return id >> profileShift }

// identBucket is the bucket of a phone (E.164) or email: FNV-1a 32 of it, modulo
// identBuckets. It is part of the stored layout.
func identBucket(x string) uint32 {
	h := uint32(2166136261)
	for i := 0; i < len(x); i++ {
		h ^= uint32(x[i])
		h *= 16777619
	}
	return h % identBuckets
}

// Kinds of the fields of a profile record. A record is recVersion, then fields, each
// a header byte and its payload. The header's low 4 bits are the kind; a numeric
// kind's payload is a uvarint. A string kind's payload is a string, and so is the
// second string of recAttr and recOther: a uvarint length and the bytes, except that
// a first string of up to 14 bytes has its length + 1 in the header's high 4 bits
// (0 there: the length follows). Fields other than these (a phone not in canonical
// E.164, a time stamp that is not a decimal number) are kept as recOther: name and
// value. recTelegram and recLine came later: a record without them decodes as it
// always did.
const (
	recVersion = 1

	recPhone   = 1  // uvarint: the digits of a canonical E.164 number
	recEmail   = 2  // string
	recName    = 3  // string
	recCountry = 4  // string
	recZone    = 5  // uvarint: index in zoneTable
	recLocale  = 6  // string
	recCreated = 7  // uvarint: unix ms
	recSource  = 8  // string
	recAttr    = 9  // string name, string value: custom attribute a.NAME
	recOther   = 10 // string field name, string value
	// varint (zig-zag): a Telegram chat id in canonical decimal (negative for groups)
	recTelegram = 11
	// 16 bytes: the hex digits of a LINE user id (U + 32 lower-case hex digits)
	recLine = 12
)

var zoneIndex = sync.OnceValue(func() map[string]uint64 {
	m := make(map[string]uint64, len(zoneTable))
	for i, z := range zoneTable {
		if i > 0 {
			m[z] = uint64(i)
		}
	}
	return m
})

// encodeRecord is a profile's record: its fields in a fixed order (attributes sorted
// by name), so equal profiles have equal records.
func encodeRecord(p *profile) []byte {
	n := 1
	for _, f := range p.f {
		n += len(f.k) + len(f.v) + 4
	}
	return appendRecord(make([]byte, 0, n), p)
}

// appendRecord appends a profile's record (encodeRecord) to b.
func appendRecord(b []byte, p *profile) []byte {
	b = append(b, recVersion)
	str := func(s string) {
		b = binary.AppendUvarint(b, uint64(len(s)))
		b = append(b, s...)
	}
	// first writes a field's header and first string.
	first := func(kind byte, s string) {
		if len(s) <= 14 {
			b = append(b, kind|byte(len(s)+1)<<4)
			b = append(b, s...)
			return
		}
		b = append(b, kind)
		str(s)
	}
	other := func(k, v string) {
		first(recOther, k)
		str(v)
	}
	var attrs, others []field
	var known [recLine + 1]string // by kind
	for _, f := range p.f {
		if f.v == "" {
			continue
		}
		switch f.k {
		case hPhone:
			known[recPhone] = f.v
		case hEmail:
			known[recEmail] = f.v
		case hName:
			known[recName] = f.v
		case hCountry:
			known[recCountry] = f.v
		case hTZ:
			known[recZone] = f.v
		case hLocale:
			known[recLocale] = f.v
		case hCreated:
			known[recCreated] = f.v
		case hSource:
			known[recSource] = f.v
		case hTelegram:
			known[recTelegram] = f.v
		case hLine:
			known[recLine] = f.v
		default:
			if strings.HasPrefix(f.k, hAttr) {
				attrs = append(attrs, f)
			} else {
				others = append(others, f)
			}
		}
	}
	for kind := recPhone; kind < recAttr; kind++ {
		v := known[kind]
		if v == "" {
			continue
		}
		switch kind {
		case recPhone:
			if d, ok := canonicalDigits(v[min(1, len(v)):]); ok && v[0] == '+' {
				b = append(b, recPhone)
				b = binary.AppendUvarint(b, d)
			} else {
				other(hPhone, v)
			}
		case recZone:
			if i, ok := zoneIndex()[v]; ok {
				b = append(b, recZone)
				b = binary.AppendUvarint(b, i)
			} else {
				other(hTZ, v)
			}
		case recCreated:
			if d, ok := canonicalDigits(v); ok {
				b = append(b, recCreated)
				b = binary.AppendUvarint(b, d)
			} else {
				other(hCreated, v)
			}
		default:
			first(byte(kind), v)
		}
	}
	if v := known[recTelegram]; v != "" {
		if d, ok := canonicalInt(v); ok {
			b = append(b, recTelegram)
			b = binary.AppendVarint(b, d)
		} else {
			other(hTelegram, v)
		}
	}
	if v := known[recLine]; v != "" {
		if h, ok := lineHex(v); ok {
			b = append(b, recLine)
			b = append(b, h[:]...)
		} else {
			other(hLine, v)
		}
	}
	if len(attrs) > 1 {
		slices.SortFunc(attrs, func(x, y field) int { return strings.Compare(x.k, y.k) })
	}
	for _, f := range attrs {
		first(recAttr, f.k[len(hAttr):])
		str(f.v)
	}
	if len(others) > 1 {
		slices.SortFunc(others, func(x, y field) int { return strings.Compare(x.k, y.k) })
	}
	for _, f := range others {
		other(f.k, f.v)
	}
	return b
}

// canonicalDigits parses s as a decimal number written without leading zeros, so that
// formatting the number gives s back.
func canonicalDigits(s string) (uint64, bool) {
	if s == "" || len(s) > 19 || s[0] == '0' {
		return 0, false
	}
	d, err := strconv.ParseUint(s, 10, 64)
	return d, err == nil
}

// canonicalInt parses s as a non-zero decimal int64 written as strconv.FormatInt
// writes it, so that formatting the number gives s back.
func canonicalInt(s string) (int64, bool) {
	if s == "" || len(s) > 20 || s[0] == '+' || s == "-0" {
		return 0, false
	}
	d, err := strconv.ParseInt(s, 10, 64)
	return d, err == nil && d != 0 && strconv.FormatInt(d, 10) == s
}

// lineHex returns the 16 bytes of a LINE user id in canonical form (U + 32 lower-case
// hex digits).
func lineHex(s string) (h [16]byte, ok bool) {
	if len(s) != 33 || s[0] != 'U' {
		return h, false
	}
	for i := range 16 {
		hi, ok1 := lowerHex(s[1+2*i])
		lo, ok2 := lowerHex(s[2+2*i])
		if !ok1 || !ok2 {
			return h, false
		}
		h[i] = hi<<4 | lo
	}
	return h, true
}

func lowerHex(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10, true
	}
	return 0, false
}

var errCorruptRecord = errors.New("corrupt profile record")

// decodeRecord returns the profile a record holds.
func decodeRecord(b []byte) (profile, error) {
	p := profile{f: make([]field, 0, 12)}
	if len(b) == 0 || b[0] != recVersion {
		return p, fmt.Errorf("%w: unknown format %q", errCorruptRecord, b[:min(len(b), 1)])
	}
	b = b[1:]
	num := func() (uint64, bool) {
		v, n := binary.Uvarint(b)
		if n <= 0 {
			return 0, false
		}
		b = b[n:]
		return v, true
	}
	str := func() (string, bool) {
		l, ok := num()
		if !ok || l > uint64(len(b)) {
			return "", false
		}
		s := string(b[:l])
		b = b[l:]
		return s, true
	}
	for len(b) > 0 {
		kind, short := b[0]&0x0f, int(b[0]>>4)
		b = b[1:]
		// first reads a field's first string.
		first := func() (string, bool) {
			if short == 0 {
				return str()
			}
			if short-1 > len(b) {
				return "", false
			}
			s := string(b[:short-1])
			b = b[short-1:]
			return s, true
		}
		switch kind {
		case recPhone, recZone, recCreated, recTelegram, recLine:
			if short != 0 {
				return p, fmt.Errorf("%w: header %#x", errCorruptRecord, kind|byte(short)<<4)
			}
		}
		var k, v string
		ok := true
		switch kind {
		case recPhone:
			var d uint64
			d, ok = num()
			k, v = hPhone, "+"+strconv.FormatUint(d, 10)
		case recZone:
			var i uint64
			i, ok = num()
			if ok && (i == 0 || i >= uint64(len(zoneTable))) {
				return p, fmt.Errorf("%w: time zone %d", errCorruptRecord, i)
			}
			k, v = hTZ, zoneTable[min(i, uint64(len(zoneTable)-1))]
		case recCreated:
			var d uint64
			d, ok = num()
			k, v = hCreated, strconv.FormatUint(d, 10)
		case recTelegram:
			d, n := binary.Varint(b)
			if ok = n > 0; ok {
				b = b[n:]
				if d == 0 {
					return p, fmt.Errorf("%w: telegram chat id 0", errCorruptRecord)
				}
			}
			k, v = hTelegram, strconv.FormatInt(d, 10)
		case recLine:
			if ok = len(b) >= 16; ok {
				k, v = hLine, "U"+hex.EncodeToString(b[:16])
				b = b[16:]
			}
		case recEmail, recName, recCountry, recLocale, recSource:
			k = [...]string{recEmail: hEmail, recName: hName, recCountry: hCountry, recLocale: hLocale, recSource: hSource}[kind]
			v, ok = first()
		case recAttr:
			k, ok = first()
			if ok {
				k = hAttr + k
				v, ok = str()
			}
		case recOther:
			k, ok = first()
			if ok {
				v, ok = str()
			}
		default:
			return p, fmt.Errorf("%w: field kind %d", errCorruptRecord, kind)
		}
		if !ok {
			return p, fmt.Errorf("%w: truncated", errCorruptRecord)
		}
		if v != "" { // never written: an empty field is not given
			p.f = append(p.f, field{k, v})
		}
	}
	return p, nil
}
