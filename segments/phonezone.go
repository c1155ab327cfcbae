package segments

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"io"
	"slices"
	"strconv"
	"strings"
	"sync"
	_ "unsafe" // go:linkname, for phonenumbers' time zone data

	"github.com/nyaruka/phonenumbers"
)

// Time zones without phonenumbers.GetTimezonesForPrefix. That function looks up the
// first 9, 8, … 1 digits of a number in a map keyed by prefixes (strconv.Atoi and a
// map lookup each) and returns the zones of the longest prefix found. Here the same
// prefixes are a digit trie walked once along the number, each node holding the
// zones of the longest prefix ending at or above it, with pickZone's answer
// precomputed when it does not depend on the region.
//
// phonenumbers keeps the map unexported, so the trie is built from the bytes it is
// built from (its embedded prefix_to_timezone data, read with go:linkname) and then
// checked key by key against GetTimezonesForPrefix; when anything does not decode or
// does not agree, zones go through GetTimezonesForPrefix. TestPhoneZoneMatchesPhonenumbers
// compares the two on numbers under every prefix of the map.

//go:linkname phonenumbersTimezoneData github.com/nyaruka/phonenumbers.timezoneData
var phonenumbersTimezoneData []byte

// zoneTrie is phonenumbers' prefix → time zones map as a trie over the digits.
type zoneTrie struct {
	next  []uint16 // node*10 + digit → node; 0: no prefix continues this way (0 is the root)
	entry []int32  // node → index in entries of the longest prefix at or above it; -1: none
	// entries are the zones of each prefix, in the map's order.
	entries []zoneEntry
}

type zoneEntry struct {
	zones    []string
	zone     string // pickZone(zones, any region), when !byRegion
	byRegion bool   // several zones, one of them a capitalZone: pickZone depends on the region
}

// zone returns pickZone(phonenumbers.GetTimezonesForPrefix(digits), region) for the
// digits of an E.164 number (without "+").
func (t *zoneTrie) zone(digits []byte, region string) string {
	n := 0
	for _, c := range digits {
		next := t.next[n*10+int(c-'0')]
		if next == 0 {
			break
		}
		n = int(next)
	}
	e := t.entry[n]
	if e < 0 {
		return "" // phonenumbers.UNKNOWN_TIMEZONE
	}
	if z := &t.entries[e]; z.byRegion {
		return pickZone(z.zones, region)
	}
	return t.entries[e].zone
}

// loadZoneTrie returns the trie, nil when zones must go through phonenumbers.
var loadZoneTrie = sync.OnceValue(func() *zoneTrie {
	t, err := buildZoneTrie(phonenumbersTimezoneData)
	if err != nil {
		return nil
	}
	return t
})

// buildZoneTrie decodes phonenumbers' time zone data as its loadIntArrayMap does (a
// gzipped list of zone names, then keys as varint deltas, each with uint16 indexes of
// its zones) and checks every key against GetTimezonesForPrefix.
func buildZoneTrie(data []byte) (*zoneTrie, error) {
	zr, err := gzip.NewReader(bytes.NewReader(data))
	if err != nil {
		return nil, err
	}
	raw, err := io.ReadAll(zr)
	if err != nil {
		return nil, err
	}
	r := bytes.NewReader(raw)
	var size uint32
	if err := binary.Read(r, binary.LittleEndian, &size); err != nil {
		return nil, err
	}
	names := make([]byte, size)
	if _, err := io.ReadFull(r, names); err != nil {
		return nil, err
	}
	values := strings.Split(string(names), "\n")
	var count uint32
	if err := binary.Read(r, binary.LittleEndian, &count); err != nil {
		return nil, err
	}
	t := &zoneTrie{next: make([]uint16, 10), entry: []int32{-1}}
	key := 0
	for range count {
		diff, err := binary.ReadUvarint(r)
		if err != nil {
			return nil, err
		}
		key += int(diff)
		nz, err := r.ReadByte()
		if err != nil {
			return nil, err
		}
		zones := make([]string, nz)
		for i := range zones {
			var v uint16
			if err := binary.Read(r, binary.LittleEndian, &v); err != nil {
				return nil, err
			}
			if int(v) >= len(values) {
				return nil, errors.New("zone index out of range")
			}
			zones[i] = values[v]
		}
		if key <= 0 {
			return nil, errors.New("prefix not positive")
		}
		n := 0
		for _, c := range []byte(strconv.Itoa(key)) {
			i := n*10 + int(c-'0')
			if t.next[i] == 0 {
				if len(t.entry) > 1<<16-1 {
					return nil, errors.New("too many prefixes")
				}
				t.next[i] = uint16(len(t.entry))
				t.next = append(t.next, make([]uint16, 10)...)
				t.entry = append(t.entry, -1)
			}
			n = int(t.next[i])
		}
		// A key seen twice keeps its last zones, as phonenumbers' map does.
		t.entry[n] = int32(len(t.entries))
		t.entries = append(t.entries, zoneEntry{zones: zones})
	}
	for i := range t.entries {
		e := &t.entries[i]
		e.zone = pickZone(e.zones, "")
		if len(e.zones) > 1 {
			for _, c := range capitalZone {
				e.byRegion = e.byRegion || slices.Contains(e.zones, c)
			}
		}
	}
	// Each node inherits the zones of the longest prefix above it; nodes are numbered
	// after their parents.
	for n := range t.entry {
		for c := range 10 {
			if m := t.next[n*10+c]; m != 0 && t.entry[m] < 0 {
				t.entry[m] = t.entry[n]
			}
		}
	}
	// The data is the map phonenumbers answers from: every prefix has its zones.
	var walk func(n int, prefix []byte) error
	walk = func(n int, prefix []byte) error {
		if len(prefix) > 0 {
			want, err := phonenumbers.GetTimezonesForPrefix(string(prefix))
			if err != nil {
				return err
			}
			got := []string{phonenumbers.UNKNOWN_TIMEZONE}
			if e := t.entry[n]; e >= 0 {
				got = t.entries[e].zones
			}
			if !slices.Equal(got, want) {
				return errors.New("time zones differ from phonenumbers'")
			}
		}
		for c := range 10 {
			if m := t.next[n*10+c]; m != 0 {
				if err := walk(int(m), append(prefix, byte('0'+c))); err != nil {
					return err
				}
			}
		}
		return nil
	}
	if err := walk(0, nil); err != nil {
		return nil, err
	}
	return t, nil
}
