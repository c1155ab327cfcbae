package analytics

import (
	"context"
	"fmt"
	"math/bits"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// campaign_words (migration 0014) is the funnels' pre-aggregate. Per campaign it holds
// sets of contacts as bitmaps, like the cohort tables (cohorts.go): contact c is bit
// c % 64 of word c / 64, and AggregatingMergeTree or-s the words of a set together
// (groupBitOr), so duplicated events, inserts retried, the backfill overlapping the view
// and events in any order set the same bits and change nothing. Each set is named by a
// facet and a value:
//
//	kind     the event's kind   the contacts with an event of that kind (queued, sent,
//	                            delivered, read, clicked, replied, converted, skipped, failed)
//	skipped  the reason         the contacts with a skipped event with that reason
//	failed   the error code     the contacts with a failed event with that code
//	variant, sender, country, channel
//	         the value          the contacts with a funnel event (queued … converted)
//	                            carrying that value (status webhooks carry none)
//
// A funnel then reads one row per (set, word) — 64 contacts each — and does the set
// algebra in Go (Funnel, FunnelBy): at 1M recipients that is some 16k words per set,
// where the events hold 3M rows to group by contact. Only a contact found under two
// reasons (or codes) needs its events: the funnel names the reason of its latest
// skipped event, which bitmaps cannot tell; there are few such contacts, and they are
// read by id from events (ordered by campaign, kind, contact). Before merges, a set has
// a row per word and insert that touched it: a bulk load sends in contact-id order, so
// its inserts share few words (1M recipients, 2.9M events: 172k rows); a trickle of
// sends to a sparse segment may add a row per event until the parts merge.

const createCampaignWords = `CREATE TABLE IF NOT EXISTS campaign_words (
    campaign_id String,
    facet       String,
    value       String,
    word        UInt32,
    bits        AggregateFunction(groupBitOr, UInt64)
) ENGINE = AggregatingMergeTree()
ORDER BY (campaign_id, facet, value, word)`

// funnelKindsSQL are the kinds a funnel by dimension reads.
const funnelKindsSQL = `('queued', 'sent', 'delivered', 'read', 'clicked', 'replied', 'converted')`

// campaignWordsSelect aggregates events into campaign_words rows; %s is an extra filter.
// Each event gives one row per set it belongs to (arrayJoin over (facet, value, keep)
// triples; a subquery in a materialized view fails on 18.16). CAST keeps every value a
// plain String whether the column is LowCardinality (≥ 20.1) or not.
var campaignWordsSelect = `SELECT campaign_id,
    tupleElement(arrayJoin(arrayFilter(x -> tupleElement(x, 3) = 1, [
        ('kind', CAST(kind AS String), toUInt8(1)),
        ('skipped', CAST(reason AS String), toUInt8(kind = 'skipped')),
        ('failed', toString(error_code), toUInt8(kind = 'failed')),
        ('variant', CAST(variant AS String), toUInt8(variant != '' AND kind IN ` + funnelKindsSQL + `)),
        ('sender', CAST(sender_id AS String), toUInt8(sender_id != '' AND kind IN ` + funnelKindsSQL + `)),
        ('country', CAST(country AS String), toUInt8(country != '' AND kind IN ` + funnelKindsSQL + `)),
        ('channel', CAST(channel AS String), toUInt8(channel != '' AND kind IN ` + funnelKindsSQL + `))])) AS fv, 1) AS facet,
    tupleElement(fv, 2) AS value, intDiv(contact_id, 64) AS word, groupBitOrState(` + contactBit + `) AS bits
FROM events
WHERE campaign_id != '' AND kind IN ('queued', 'sent', 'delivered', 'read', 'clicked', 'replied', 'converted', 'skipped', 'failed')%s
GROUP BY campaign_id, facet, value, word`

// campaign_minutes (migration 0014 too) is the timeline's pre-aggregate: per campaign,
// kind (sent, delivered, read, clicked, failed, skipped) and minute (since the epoch),
// the contacts with such an event in that minute, as words of 64 contacts like
// campaign_words. A timeline at any step of whole minutes or-s a step's minutes word by
// word and counts the bits (Timeline), so duplicated events change nothing.
const createCampaignMinutes = `CREATE TABLE IF NOT EXISTS campaign_minutes (
    campaign_id String,
    kind        String,
    minute      UInt32,
    word        UInt32,
    bits        AggregateFunction(groupBitOr, UInt64)
) ENGINE = AggregatingMergeTree()
ORDER BY (campaign_id, kind, minute, word)`

var campaignMinutesSelect = `SELECT campaign_id, CAST(kind AS String) AS kind, toUInt32(intDiv(toUInt32(ts), 60)) AS minute,
    intDiv(contact_id, 64) AS word, groupBitOrState(` + contactBit + `) AS bits
FROM events
WHERE campaign_id != '' AND kind IN ('sent', 'delivered', 'read', 'clicked', 'failed', 'skipped')%s
GROUP BY campaign_id, kind, minute, word`

// campaignBitmaps are the tables of migration 0014: name, CREATE, columns, SELECT.
var campaignBitmaps = []struct{ name, create, columns, sel string }{
	{"campaign_words", createCampaignWords, "campaign_id, facet, value, word, bits", campaignWordsSelect},
	{"campaign_minutes", createCampaignMinutes, "campaign_id, kind, minute, word, bits", campaignMinutesSelect},
}

// campaignBitmapsDDL creates the tables of migration 0014 and the views that feed them.
func campaignBitmapsDDL(schemaFeatures) []string {
	var out []string
	for _, t := range campaignBitmaps {
		out = append(out, t.create, "CREATE MATERIALIZED VIEW IF NOT EXISTS "+t.name+"_mv TO "+t.name+" AS\n"+fmt.Sprintf(t.sel, ""))
	}
	return out
}

// backfillCampaignBitmaps computes the tables of migration 0014 from the events stored
// before their views existed, one monthly partition at a time; what both see is or-ed
// twice, which changes nothing. It first waits for the inserts into events that began
// before the views existed (a sink running through the migration): those do not feed the
// views, and their rows may become visible only after a backfill read.
func backfillCampaignBitmaps(ctx context.Context, conn driver.Conn) error {
	if err := waitOlderInserts(ctx, conn, "events", time.Now(), 30*time.Second); err != nil {
		return err
	}
	parts, err := eventPartitions(ctx, conn)
	if err != nil {
		return err
	}
	for _, t := range campaignBitmaps {
		for _, p := range parts {
			q := "INSERT INTO " + t.name + " (" + t.columns + ") " + fmt.Sprintf(t.sel, " AND toYYYYMM(ts) = "+strconv.FormatUint(p, 10))
			if err := conn.Exec(ctx, q); err != nil {
				return fmt.Errorf("backfill %s from partition %d: %w", t.name, p, err)
			}
		}
	}
	return nil
}

// waitOlderInserts waits until no INSERT INTO table (of any database: 18.16's
// system.processes does not say which) that began before since is still running, or for
// at most limit (a bulk load may run longer; what it inserts after since is left out).
func waitOlderInserts(ctx context.Context, conn driver.Conn, table string, since time.Time, limit time.Duration) error {
	re := `(?i)^\s*INSERT\s+INTO\s+(\S+\.)?` + table + `[\s(]`
	deadline := since.Add(limit)
	for {
		var n uint64
		if err := conn.QueryRow(ctx, "SELECT count() FROM system.processes WHERE match(query, ?) AND elapsed >= ?",
			re, time.Since(since).Seconds()).Scan(&n); err != nil {
			return fmt.Errorf("wait for inserts into %s: %w", table, err)
		}
		if n == 0 || time.Now().After(deadline) {
			return nil
		}
		t := time.NewTimer(20 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
}

// wordSet is a set of contacts: word number → its 64 bits (never 0).
type wordSet map[uint32]uint64

func (s wordSet) or(w uint32, b uint64) {
	if b != 0 {
		s[w] |= b
	}
}

func (s wordSet) count() uint64 {
	var n uint64
	for _, b := range s {
		n += uint64(bits.OnesCount64(b))
	}
	return n
}

// union is the union of sets.
func union(sets ...wordSet) wordSet {
	out := wordSet{}
	for _, s := range sets {
		for w, b := range s {
			out[w] |= b
		}
	}
	return out
}

// countAnd counts the contacts in both a and b.
func countAnd(a, b wordSet) uint64 {
	if len(b) < len(a) {
		a, b = b, a
	}
	var n uint64
	for w, x := range a {
		n += uint64(bits.OnesCount64(x & b[w]))
	}
	return n
}

// facetSets reads the sets of the given facets of a campaign: facet → value → set.
func facetSets(ctx context.Context, conn driver.Conn, campaign string, facets ...string) (map[string]map[string]wordSet, error) {
	// Each row's state as it is, or-ed here: a GROUP BY in ClickHouse (18.16) costs
	// several times the scan, and unmerged parts add few rows (see above).
	q := `SELECT facet, value, word, finalizeAggregation(bits) FROM campaign_words
WHERE campaign_id = ? AND facet IN (` + quoteList(facets) + `)`
	rows, err := conn.Query(ctx, q, campaign)
	if err != nil {
		return nil, fmt.Errorf("read campaign_words: %w", err)
	}
	defer rows.Close()
	out := map[string]map[string]wordSet{}
	for _, f := range facets {
		out[f] = map[string]wordSet{}
	}
	var (
		facet, value string
		word         uint32
		b            uint64
	)
	for rows.Next() {
		if err := rows.Scan(&facet, &value, &word, &b); err != nil {
			return nil, fmt.Errorf("read campaign_words: %w", err)
		}
		s := out[facet][value]
		if s == nil {
			s = wordSet{}
			out[facet][value] = s
		}
		s.or(word, b)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read campaign_words: %w", err)
	}
	return out, nil
}

// quoteList is the SQL list of the fixed identifiers names (no quotes inside).
func quoteList(names []string) string {
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = "'" + n + "'"
	}
	return strings.Join(q, ", ")
}

// funnelFromWords is Funnel over campaign_words.
func funnelFromWords(ctx context.Context, conn driver.Conn, campaign string) (FunnelReport, error) {
	rep := FunnelReport{Campaign: campaign}
	sets, err := facetSets(ctx, conn, campaign, "kind", "skipped", "failed")
	if err != nil {
		return rep, fmt.Errorf("funnel of %s: %w", campaign, err)
	}
	k := sets["kind"]
	read := union(k["read"])
	delivered := union(read, k["delivered"])
	sent := union(delivered, k["sent"])
	queued := union(sent, k["queued"])
	counts := []uint64{queued.count(), sent.count(), delivered.count(), read.count()}
	rep.Steps = stepsOf(funnelSteps, counts)

	skipped, err := latestPerContact(ctx, conn, campaign, "skipped", "reason", sets["skipped"])
	if err != nil {
		return rep, fmt.Errorf("funnel of %s: %w", campaign, err)
	}
	for _, rc := range skipped {
		rep.Skipped = append(rep.Skipped, ReasonCount{Reason: rc.value, Contacts: rc.n})
	}
	failed, err := latestPerContact(ctx, conn, campaign, "failed", "toString(error_code)", sets["failed"])
	if err != nil {
		return rep, fmt.Errorf("funnel of %s: %w", campaign, err)
	}
	for _, rc := range failed {
		code, err := strconv.ParseInt(rc.value, 10, 32)
		if err != nil {
			return rep, fmt.Errorf("funnel of %s: error code %q: %w", campaign, rc.value, err)
		}
		rep.Failed = append(rep.Failed, CodeCount{Code: int32(code), Contacts: rc.n})
	}
	// outcomesQuery's order: most contacts first, then by reason, then by code.
	slices.SortStableFunc(rep.Skipped, func(a, b ReasonCount) int {
		if a.Contacts != b.Contacts {
			return cmpDesc(a.Contacts, b.Contacts)
		}
		return strings.Compare(a.Reason, b.Reason)
	})
	slices.SortStableFunc(rep.Failed, func(a, b CodeCount) int {
		if a.Contacts != b.Contacts {
			return cmpDesc(a.Contacts, b.Contacts)
		}
		return int(a.Code) - int(b.Code)
	})
	return rep, nil
}

func cmpDesc(a, b uint64) int {
	switch {
	case a > b:
		return -1
	case a < b:
		return 1
	}
	return 0
}

type valueCount struct {
	value string
	n     uint64
}

// maxAmbiguous is how many contacts found under two values or more latestPerContact
// reads by id; past it, it reads the kind's events of the whole campaign.
var maxAmbiguous uint64 = 50_000

// latestPerContact counts the contacts of sets (value → contacts with an event of kind
// carrying it) under the value of their latest such event (by time, then event id). A
// contact in one set only is counted there; the latest value of one in several is read
// from events (expr computes the value from a row of events).
func latestPerContact(ctx context.Context, conn driver.Conn, campaign, kind, expr string, sets map[string]wordSet) ([]valueCount, error) {
	seen, multi := wordSet{}, wordSet{}
	for _, s := range sets {
		for w, b := range s {
			multi.or(w, seen[w]&b)
			seen[w] |= b
		}
	}
	counts := map[string]uint64{}
	for v, s := range sets {
		var n uint64
		for w, b := range s {
			n += uint64(bits.OnesCount64(b &^ multi[w]))
		}
		if n > 0 {
			counts[v] = n
		}
	}
	if nm := multi.count(); nm > 0 {
		filter := ""
		if nm <= maxAmbiguous {
			ids := make([]string, 0, nm)
			for w, b := range multi {
				for b != 0 {
					i := bits.TrailingZeros64(b)
					ids = append(ids, strconv.FormatUint(uint64(w)*64+uint64(i), 10))
					b &= b - 1
				}
			}
			filter = " AND contact_id IN (" + strings.Join(ids, ",") + ")"
		}
		q := `SELECT contact_id, argMax(` + expr + `, (ts_ms, event_id)) FROM events
WHERE campaign_id = ? AND kind = '` + kind + `'` + filter + `
GROUP BY contact_id`
		rows, err := conn.Query(ctx, q, campaign)
		if err != nil {
			return nil, fmt.Errorf("latest %s of contacts: %w", kind, err)
		}
		defer rows.Close()
		var (
			c uint32
			v string
		)
		for rows.Next() {
			if err := rows.Scan(&c, &v); err != nil {
				return nil, fmt.Errorf("latest %s of contacts: %w", kind, err)
			}
			if multi[c/64]&(1<<(c%64)) != 0 {
				counts[v]++
			}
		}
		if err := rows.Err(); err != nil {
			return nil, fmt.Errorf("latest %s of contacts: %w", kind, err)
		}
	}
	out := make([]valueCount, 0, len(counts))
	for v, n := range counts {
		out = append(out, valueCount{v, n})
	}
	return out, nil
}

// funnelByFromWords is FunnelBy over campaign_words. A contact's group is the value of
// the dimension on its funnel events, the smallest when they carry several (a contact
// whose messages left on two channels), empty when none carries one.
func funnelByFromWords(ctx context.Context, conn driver.Conn, campaign, by string) (FunnelByReport, error) {
	rep := FunnelByReport{Campaign: campaign, By: by, Groups: []FunnelGroup{}}
	if _, ok := funnelDims[by]; !ok {
		return rep, fmt.Errorf("funnel by %q: want variant, sender, country or channel", by)
	}
	sets, err := facetSets(ctx, conn, campaign, "kind", by)
	if err != nil {
		return rep, fmt.Errorf("funnel of %s by %s: %w", campaign, by, err)
	}
	k := sets["kind"]
	read := union(k["read"], k["clicked"], k["replied"], k["converted"])
	delivered := union(read, k["delivered"])
	sent := union(delivered, k["sent"])
	all := union(sent, k["queued"])
	steps := []wordSet{all, sent, delivered, read, union(k["clicked"]), union(k["replied"]), union(k["converted"])}
	names := append(append([]string{}, funnelSteps...), engagementSteps...)

	values := make([]string, 0, len(sets[by]))
	for v := range sets[by] {
		values = append(values, v)
	}
	slices.Sort(values)
	taken := wordSet{} // contacts of the groups so far
	group := func(key string, members wordSet) {
		c := make([]uint64, len(steps))
		for i, s := range steps {
			c[i] = countAnd(members, s)
		}
		if c[0] > 0 {
			rep.Groups = append(rep.Groups, FunnelGroup{Key: key, Steps: stepsOf(names, c)})
		}
	}
	for _, v := range values {
		mine := wordSet{}
		for w, b := range sets[by][v] {
			mine.or(w, b&^taken[w])
		}
		for w, b := range mine {
			taken[w] |= b
		}
		group(v, mine)
	}
	valued := rep.Groups
	rep.Groups = nil
	none := wordSet{}
	for w, b := range all {
		none.or(w, b&^taken[w])
	}
	group("", none)
	// funnelByQuery's order: by key, so the empty group first.
	rep.Groups = append(rep.Groups, valued...)
	if rep.Groups == nil {
		rep.Groups = []FunnelGroup{}
	}
	return rep, nil
}

// abReached are the kinds whose events reach each step of an A/B comparison (abSteps).
var abReached = map[string][]string{
	"delivered": {"delivered", "read", "clicked", "replied", "converted"},
	"read":      {"read", "clicked", "replied", "converted"},
	"clicked":   {"clicked"},
	"replied":   {"replied"},
	"converted": {"converted"},
}

// abFromWords counts, per variant, the contacts sent to and those of them that reached
// step, over campaign_words. A contact's variant is the smallest its funnel events carry,
// empty when none carries one; variants without a contact sent to are left out; by
// variant.
func abFromWords(ctx context.Context, conn driver.Conn, campaign, step string) ([]VariantResult, error) {
	sets, err := facetSets(ctx, conn, campaign, "kind", "variant")
	if err != nil {
		return nil, err
	}
	k := sets["kind"]
	sent := union(k["sent"])
	var reachedSets []wordSet
	for _, kind := range abReached[step] {
		reachedSets = append(reachedSets, k[kind])
	}
	reached := union(reachedSets...)
	values := make([]string, 0, len(sets["variant"]))
	for v := range sets["variant"] {
		values = append(values, v)
	}
	slices.Sort(values)
	var out []VariantResult
	taken := wordSet{}
	add := func(name string, members wordSet) {
		mine := wordSet{} // members sent to
		for w, b := range members {
			mine.or(w, b&sent[w])
		}
		if n := mine.count(); n > 0 {
			c := countAnd(mine, reached)
			out = append(out, VariantResult{Variant: name, Sent: n, Converted: c, Rate: ratio(c, n)})
		}
	}
	var valued []VariantResult
	for _, v := range values {
		mine := wordSet{}
		for w, b := range sets["variant"][v] {
			mine.or(w, b&^taken[w])
		}
		for w, b := range mine {
			taken[w] |= b
		}
		add(v, mine)
	}
	valued, out = out, nil
	none := wordSet{}
	for w, b := range sent {
		none.or(w, b&^taken[w])
	}
	add("", none)
	return append(out, valued...), nil
}
