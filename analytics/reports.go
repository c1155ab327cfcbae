package analytics

import (
	"context"
	"fmt"
	"math"
	"sort"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// Dimensions a funnel can be split by, and the events column each reads.
var funnelDims = map[string]string{"variant": "variant", "sender": "sender_id", "country": "country", "channel": "channel"}

// engagementSteps follow the delivery funnel: distinct contacts with at least one such
// event (a click does not need a read status: WhatsApp may not report reads).
var engagementSteps = []string{"clicked", "replied", "converted"}

// FunnelGroup is the funnel of one value of a dimension (one variant, sender, country).
type FunnelGroup struct {
	Key   string       `json:"key"`
	Steps []FunnelStep `json:"steps"`
}

// FunnelByReport is a campaign's funnel split by a dimension.
type FunnelByReport struct {
	Campaign string        `json:"campaign_id"`
	By       string        `json:"by"`
	Groups   []FunnelGroup `json:"groups"`
}

// funnelByQuery gives per group the contacts at each step: queued … read by the
// furthest-step rule of funnelQuery, then clicked, replied and converted as distinct
// contacts with such an event. A contact's group is the dimension's value on any of its
// events that carries one (status webhooks do not), empty when none does.
const funnelByQuery = `SELECT g,
    countIf(stage >= 1), countIf(stage >= 2), countIf(stage >= 3), countIf(stage >= 4),
    countIf(clicked), countIf(replied), countIf(converted)
FROM (
    SELECT contact_id,
           anyIf(%[1]s, %[1]s != '') AS g,
           max(multiIf(kind IN ('read', 'clicked', 'replied', 'converted'), 4, kind = 'delivered', 3, kind = 'sent', 2, kind = 'queued', 1, 0)) AS stage,
           max(kind = 'clicked') AS clicked,
           max(kind = 'replied') AS replied,
           max(kind = 'converted') AS converted
    FROM events
    WHERE campaign_id = ? AND kind IN ('queued', 'sent', 'delivered', 'read', 'clicked', 'replied', 'converted')
    GROUP BY contact_id
)
GROUP BY g
ORDER BY g`

// FunnelBy computes a campaign's funnel per variant, sender or country, with the steps
// queued, sent, delivered, read, clicked, replied, converted (distinct contacts). A
// click, reply or conversion implies the message was read. OfPrevious and OfFirst are
// relative to the group's own steps. It reads the campaign_words bitmaps (see
// funnelByFromWords for the group of a contact whose events carry several values).
func FunnelBy(ctx context.Context, conn driver.Conn, campaign, by string) (FunnelByReport, error) {
	return funnelByFromWords(ctx, conn, campaign, by)
}

// funnelByFromEvents is FunnelBy computed from the events, grouped by contact.
func funnelByFromEvents(ctx context.Context, conn driver.Conn, campaign, by string) (FunnelByReport, error) {
	rep := FunnelByReport{Campaign: campaign, By: by, Groups: []FunnelGroup{}}
	col, ok := funnelDims[by]
	if !ok {
		return rep, fmt.Errorf("funnel by %q: want variant, sender or country", by)
	}
	rows, err := conn.Query(ctx, fmt.Sprintf(funnelByQuery, col), campaign)
	if err != nil {
		return rep, fmt.Errorf("funnel of %s by %s: %w", campaign, by, err)
	}
	defer rows.Close()
	names := append(append([]string{}, funnelSteps...), engagementSteps...)
	for rows.Next() {
		var g FunnelGroup
		c := make([]uint64, len(names))
		if err := rows.Scan(&g.Key, &c[0], &c[1], &c[2], &c[3], &c[4], &c[5], &c[6]); err != nil {
			return rep, fmt.Errorf("funnel of %s by %s: %w", campaign, by, err)
		}
		g.Steps = stepsOf(names, c)
		rep.Groups = append(rep.Groups, g)
	}
	if err := rows.Err(); err != nil {
		return rep, fmt.Errorf("funnel of %s by %s: %w", campaign, by, err)
	}
	return rep, nil
}

func stepsOf(names []string, counts []uint64) []FunnelStep {
	out := make([]FunnelStep, len(names))
	for i, n := range names {
		out[i] = FunnelStep{Name: n, Contacts: counts[i], OfFirst: ratio(counts[i], counts[0])}
		if i == 0 {
			out[i].OfPrevious = ratio(counts[0], counts[0])
		} else {
			out[i].OfPrevious = ratio(counts[i], counts[i-1])
		}
	}
	return out
}

// Cohort is the contacts first sent to in one week (Monday, UTC) and how many of them
// engaged (read, clicked, replied or converted) in each week since.
type Cohort struct {
	Week     string    `json:"week"` // YYYY-MM-DD, a Monday
	Contacts uint64    `json:"contacts"`
	Active   []uint64  `json:"active"`   // Active[k]: contacts engaged in week k after the cohort's week
	Retained []float64 `json:"retained"` // Active[k] / Contacts
}

// RetentionReport is cohort retention by first-contact week.
type RetentionReport struct {
	Weeks   int      `json:"weeks"`
	Cohorts []Cohort `json:"cohorts"`
}

// Retention computes cohort retention for contacts first sent to in [from, to): each
// cohort's size and, for weeks 0 … weeks-1 after its week, the contacts that engaged
// (read, clicked, replied or converted) in that calendar week (Monday to Sunday, UTC),
// whenever in the week it happened. It reads the week_contacts bitmaps (and, when from
// or to falls inside a week, the sends of that week in sent_times), not the events:
// duplicated or late events change nothing, and its cost does not depend on whether
// ClickHouse has merged the parts (see cohorts.go).
func Retention(ctx context.Context, conn driver.Conn, from, to time.Time, weeks int) (RetentionReport, error) {
	rep := RetentionReport{Weeks: weeks, Cohorts: []Cohort{}}
	if weeks < 1 || weeks > maxRetentionWeeks {
		return rep, fmt.Errorf("retention: %d weeks: want 1 to %d", weeks, maxRetentionWeeks)
	}
	if !from.Before(to) {
		return rep, nil
	}
	rows, err := retentionBits(ctx, conn, from, to, weeks)
	if err != nil {
		return rep, fmt.Errorf("retention: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var (
			cw   int64
			n    uint64
			dest = []any{&cw, &n}
			c    = Cohort{Active: make([]uint64, weeks), Retained: make([]float64, weeks)}
		)
		for k := range c.Active {
			dest = append(dest, &c.Active[k])
		}
		if err := rows.Scan(dest...); err != nil {
			return rep, fmt.Errorf("retention: %w", err)
		}
		c.Week, c.Contacts = weekMonday(cw).Format(time.DateOnly), n
		for k, a := range c.Active {
			c.Retained[k] = ratio(a, n)
		}
		rep.Cohorts = append(rep.Cohorts, c)
	}
	if err := rows.Err(); err != nil {
		return rep, fmt.Errorf("retention: %w", err)
	}
	return rep, nil
}

// CampaignCohort is the contacts a campaign was sent to and how many of them engaged
// (read, clicked, replied or converted, in any campaign or none) in each week from the
// week of the campaign's first send.
type CampaignCohort struct {
	Campaign string    `json:"campaign_id"`
	Week     string    `json:"week"` // YYYY-MM-DD, the Monday (UTC) of the campaign's first send
	Contacts uint64    `json:"contacts"`
	Active   []uint64  `json:"active"`   // Active[k]: contacts engaged in week k from Week
	Retained []float64 `json:"retained"` // Active[k] / Contacts
}

// CampaignRetentionReport is cohort retention by campaign.
type CampaignRetentionReport struct {
	Weeks   int              `json:"weeks"`
	Cohorts []CampaignCohort `json:"cohorts"`
}

// RetentionByCampaign computes cohort retention by campaign for the campaigns first
// sent in [from, to) (only those of campaigns, when given): each campaign's contacts
// and, for weeks 0 … weeks-1 from the week of its first send, how many engaged that
// week. It reads the bitmaps of campaign_starts, campaign_contacts and week_contacts
// (see cohorts.go), 64 contacts per row, so duplicated events change nothing and all
// campaigns at once cost about as much as the words of their audiences.
func RetentionByCampaign(ctx context.Context, conn driver.Conn, from, to time.Time, weeks int, campaigns ...string) (CampaignRetentionReport, error) {
	rep := CampaignRetentionReport{Weeks: weeks, Cohorts: []CampaignCohort{}}
	if weeks < 1 || weeks > maxRetentionWeeks {
		return rep, fmt.Errorf("retention by campaign: %d weeks: want 1 to %d", weeks, maxRetentionWeeks)
	}
	if !from.Before(to) {
		return rep, nil
	}
	f, t := uint64(max(from.UnixMilli(), 0)), uint64(max(to.UnixMilli(), 0))
	wf, wt := weekNumber(time.UnixMilli(int64(f))), weekNumber(time.UnixMilli(int64(t)-1))
	args := []any{f, t, f, t}
	if len(campaigns) > 0 {
		set := clickhouse.GroupSet{Value: make([]any, len(campaigns))}
		for i, c := range campaigns {
			set.Value[i] = c
		}
		args = []any{set, f, t, set, f, t}
	}
	rows, err := conn.Query(ctx, campaignRetentionBitsQuery(wf, wt, weeks, len(campaigns) > 0), args...)
	if err != nil {
		return rep, fmt.Errorf("retention by campaign: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var (
			w0   int64
			c    = CampaignCohort{Active: make([]uint64, weeks), Retained: make([]float64, weeks)}
			dest = []any{&c.Campaign, &w0, &c.Contacts}
		)
		for k := range c.Active {
			dest = append(dest, &c.Active[k])
		}
		if err := rows.Scan(dest...); err != nil {
			return rep, fmt.Errorf("retention by campaign: %w", err)
		}
		c.Week = weekMonday(w0).Format(time.DateOnly)
		for k, a := range c.Active {
			c.Retained[k] = ratio(a, c.Contacts)
		}
		rep.Cohorts = append(rep.Cohorts, c)
	}
	if err := rows.Err(); err != nil {
		return rep, fmt.Errorf("retention by campaign: %w", err)
	}
	return rep, nil
}

// maxRetentionWeeks bounds the weeks a retention report follows (two years).
const maxRetentionWeeks = 104

// VariantResult is one variant's conversion at the compared step.
type VariantResult struct {
	Variant   string  `json:"variant"`
	Sent      uint64  `json:"sent"`      // contacts sent to
	Converted uint64  `json:"converted"` // of them, contacts that reached the step
	Rate      float64 `json:"rate"`
	// Against the control (the first variant): the difference in rate, the two-proportion
	// z statistic and its two-sided p-value. Zero for the control itself.
	Lift   float64 `json:"lift"`
	Z      float64 `json:"z"`
	PValue float64 `json:"p_value"`
}

// ABReport compares a campaign's variants at one step.
type ABReport struct {
	Campaign string          `json:"campaign_id"`
	Step     string          `json:"step"`
	Control  string          `json:"control"`
	Variants []VariantResult `json:"variants"`
}

// abSteps are the steps an A/B comparison can use, and the events that reach each.
var abSteps = map[string]string{
	"delivered": "'delivered', 'read', 'clicked', 'replied', 'converted'",
	"read":      "'read', 'clicked', 'replied', 'converted'",
	"clicked":   "'clicked'",
	"replied":   "'replied'",
	"converted": "'converted'",
}

const abQuery = `SELECT variant, count() AS sent, countIf(reached) AS converted
FROM (
    SELECT contact_id, anyIf(variant, variant != '') AS variant,
           max(kind = 'sent') AS was_sent, max(kind IN (%s)) AS reached
    FROM events WHERE campaign_id = ? GROUP BY contact_id
)
WHERE was_sent
GROUP BY variant ORDER BY variant`

// ABTest compares the variants of a campaign at step (delivered, read, clicked, replied
// or converted): per variant, the contacts sent to and the share that reached the step,
// then each variant against the control (control, or the first variant by name when
// empty) with a two-sided two-proportion z-test using the pooled proportion.
//
// The counts come from the campaign_words bitmaps (abFromWords; a contact's variant is the
// smallest its funnel events carry, when they carry several).
func ABTest(ctx context.Context, conn driver.Conn, campaign, step, control string) (ABReport, error) {
	return abTestWith(ctx, conn, campaign, step, control, abFromWords)
}

// abTestWith is ABTest with the variants' counts from counts.
func abTestWith(ctx context.Context, conn driver.Conn, campaign, step, control string,
	counts func(ctx context.Context, conn driver.Conn, campaign, step string) ([]VariantResult, error)) (ABReport, error) {
	rep := ABReport{Campaign: campaign, Step: step, Variants: []VariantResult{}}
	if _, ok := abSteps[step]; !ok {
		return rep, fmt.Errorf("a/b test step %q: want delivered, read, clicked, replied or converted", step)
	}
	vs, err := counts(ctx, conn, campaign, step)
	if err != nil {
		return rep, fmt.Errorf("a/b test of %s: %w", campaign, err)
	}
	rep.Variants = append(rep.Variants, vs...)
	if len(rep.Variants) == 0 {
		return rep, nil
	}
	ci := 0
	if control != "" {
		ci = -1
		for i, v := range rep.Variants {
			if v.Variant == control {
				ci = i
			}
		}
		if ci < 0 {
			return rep, fmt.Errorf("a/b test of %s: no variant %q", campaign, control)
		}
	}
	c := rep.Variants[ci]
	rep.Control = c.Variant
	for i := range rep.Variants {
		if i == ci {
			continue
		}
		v := &rep.Variants[i]
		v.Lift = v.Rate - c.Rate
		v.Z, v.PValue = twoProportionZ(v.Converted, v.Sent, c.Converted, c.Sent)
	}
	return rep, nil
}

// abFromEvents counts the variants' contacts from the events, grouped by contact: the
// definition abFromWords must match.
func abFromEvents(ctx context.Context, conn driver.Conn, campaign, step string) ([]VariantResult, error) {
	rows, err := conn.Query(ctx, fmt.Sprintf(abQuery, abSteps[step]), campaign)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []VariantResult
	for rows.Next() {
		var v VariantResult
		if err := rows.Scan(&v.Variant, &v.Sent, &v.Converted); err != nil {
			return nil, err
		}
		v.Rate = ratio(v.Converted, v.Sent)
		out = append(out, v)
	}
	return out, rows.Err()
}

// twoProportionZ is the pooled two-proportion z-test of x1/n1 against x2/n2 and its
// two-sided p-value; (0, 1) when the test is undefined (an empty group, or a pooled
// rate of 0 or 1).
func twoProportionZ(x1, n1, x2, n2 uint64) (z, p float64) {
	if n1 == 0 || n2 == 0 {
		return 0, 1
	}
	p1, p2 := float64(x1)/float64(n1), float64(x2)/float64(n2)
	pool := float64(x1+x2) / float64(n1+n2)
	se := math.Sqrt(pool * (1 - pool) * (1/float64(n1) + 1/float64(n2)))
	if se == 0 {
		return 0, 1
	}
	z = (p1 - p2) / se
	return z, math.Erfc(math.Abs(z) / math.Sqrt2)
}

// HeatmapCell is the messages sent in one local weekday and hour, and the share read.
type HeatmapCell struct {
	Weekday string  `json:"weekday"` // Mon … Sun
	Hour    int     `json:"hour"`    // 0-23, recipient's local time
	Sent    uint64  `json:"sent"`
	Read    uint64  `json:"read"`
	Rate    float64 `json:"rate"`
}

// HeatmapReport is the send-hour heatmap: only cells with messages are listed.
type HeatmapReport struct {
	Campaign string        `json:"campaign_id,omitempty"`
	Cells    []HeatmapCell `json:"cells"`
	// UTCContacts is how many messages went to contacts whose time zone is unknown (not
	// in the contacts table, or unknown to this machine): those are placed in UTC.
	UTCMessages uint64 `json:"utc_messages"`
}

// heatmapQuery groups sent messages by the recipient's time zone (contacts.tz, newest
// row) and UTC hour; Go converts each hour to local time, as ClickHouse only takes a
// constant zone in toHour. A message counts as read when the contact read, clicked or
// replied to that campaign. %s is the campaign filter.
const heatmapQuery = `SELECT tz, toStartOfHour(s_ts) AS h, count(), countIf(was_read)
FROM (
    SELECT campaign_id, contact_id, minIf(ts, kind = 'sent') AS s_ts,
           max(kind = 'sent') AS was_sent, max(kind IN ('read', 'clicked', 'replied')) AS was_read
    FROM events
    WHERE kind IN ('sent', 'read', 'clicked', 'replied') %s
    GROUP BY campaign_id, contact_id
    HAVING was_sent
)
ANY LEFT JOIN (
    SELECT contact_id, argMax(tz, updated_at) AS tz FROM contacts GROUP BY contact_id
) USING contact_id
GROUP BY tz, h`

// Heatmap gives the messages sent (of one campaign, or all when campaign is empty) by
// weekday and hour in each recipient's local time zone, with the share read.
func Heatmap(ctx context.Context, conn driver.Conn, campaign string) (HeatmapReport, error) {
	rep := HeatmapReport{Campaign: campaign, Cells: []HeatmapCell{}}
	filter, args := "", []any{}
	if campaign != "" {
		filter, args = "AND campaign_id = ?", []any{campaign}
	}
	rows, err := conn.Query(ctx, fmt.Sprintf(heatmapQuery, filter), args...)
	if err != nil {
		return rep, fmt.Errorf("heatmap: %w", err)
	}
	defer rows.Close()
	type key struct{ wd, h int }
	cells := map[key]*HeatmapCell{}
	zones := map[string]*time.Location{}
	for rows.Next() {
		var (
			tz         string
			h          time.Time
			sent, read uint64
		)
		if err := rows.Scan(&tz, &h, &sent, &read); err != nil {
			return rep, fmt.Errorf("heatmap: %w", err)
		}
		loc, ok := zones[tz]
		if !ok {
			loc = nil
			if tz != "" {
				if l, err := time.LoadLocation(tz); err == nil {
					loc = l
				}
			}
			zones[tz] = loc
		}
		if loc == nil {
			loc = time.UTC
			rep.UTCMessages += sent
		}
		lt := h.In(loc)
		k := key{(int(lt.Weekday()) + 6) % 7, lt.Hour()}
		c := cells[k]
		if c == nil {
			c = &HeatmapCell{Weekday: lt.Weekday().String()[:3], Hour: lt.Hour()}
			cells[k] = c
		}
		c.Sent += sent
		c.Read += read
	}
	if err := rows.Err(); err != nil {
		return rep, fmt.Errorf("heatmap: %w", err)
	}
	keys := make([]key, 0, len(cells))
	for k := range cells {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if keys[i].wd != keys[j].wd {
			return keys[i].wd < keys[j].wd
		}
		return keys[i].h < keys[j].h
	})
	for _, k := range keys {
		c := cells[k]
		c.Rate = ratio(c.Read, c.Sent)
		rep.Cells = append(rep.Cells, *c)
	}
	return rep, nil
}

// SenderHealth is one sender's record over a period: distinct messages by outcome,
// failures by provider code, and opt-outs.
type SenderHealth struct {
	Sender       string      `json:"sender_id"`
	Sent         uint64      `json:"sent"`
	Delivered    uint64      `json:"delivered"` // delivered or read
	Read         uint64      `json:"read"`
	Failed       uint64      `json:"failed"`
	OptedOut     uint64      `json:"opted_out"`
	DeliveryRate float64     `json:"delivery_rate"` // Delivered / Sent
	FailureRate  float64     `json:"failure_rate"`  // Failed / (Sent + Failed)
	OptOutRate   float64     `json:"opt_out_rate"`  // OptedOut / Sent
	Errors       []CodeCount `json:"errors"`        // distinct failed messages by code, most frequent first
}

// senderHealthQuery counts distinct (campaign, contact) messages per sender and outcome.
// Status events may lack the sender: a message's sender is taken from any of its events.
const senderHealthQuery = `SELECT sender, countIf(s), countIf(d), countIf(r), countIf(f), countIf(o)
FROM (
    SELECT campaign_id, contact_id, anyIf(sender_id, sender_id != '') AS sender,
           max(kind = 'sent') AS s, max(kind IN ('delivered', 'read')) AS d, max(kind = 'read') AS r,
           max(kind = 'failed') AS f, max(kind = 'opted_out') AS o
    FROM events
    WHERE ts_ms >= ? AND ts_ms < ? AND kind IN ('sent', 'delivered', 'read', 'failed', 'opted_out')
    GROUP BY campaign_id, contact_id
)
GROUP BY sender ORDER BY sender`

// senderErrorsQuery counts failed messages per sender under their latest error code.
const senderErrorsQuery = `SELECT sender_id, code, count() AS n FROM (
    SELECT campaign_id, contact_id, any(sender_id) AS sender_id, toInt32(argMax(error_code, (ts_ms, event_id))) AS code
    FROM events WHERE kind = 'failed' AND ts_ms >= ? AND ts_ms < ?
    GROUP BY campaign_id, contact_id
) GROUP BY sender_id, code ORDER BY sender_id, n DESC, code`

// SenderHealthReport gives each sender's health over [from, to).
func SenderHealthReport(ctx context.Context, conn driver.Conn, from, to time.Time) ([]SenderHealth, error) {
	f, t := uint64(from.UnixMilli()), uint64(to.UnixMilli())
	out := []SenderHealth{}
	rows, err := conn.Query(ctx, senderHealthQuery, f, t)
	if err != nil {
		return nil, fmt.Errorf("sender health: %w", err)
	}
	idx := map[string]int{}
	for rows.Next() {
		var h SenderHealth
		if err := rows.Scan(&h.Sender, &h.Sent, &h.Delivered, &h.Read, &h.Failed, &h.OptedOut); err != nil {
			rows.Close()
			return nil, fmt.Errorf("sender health: %w", err)
		}
		h.DeliveryRate, h.FailureRate, h.OptOutRate = ratio(h.Delivered, h.Sent), ratio(h.Failed, h.Sent+h.Failed), ratio(h.OptedOut, h.Sent)
		h.Errors = []CodeCount{}
		idx[h.Sender] = len(out)
		out = append(out, h)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sender health: %w", err)
	}
	rows, err = conn.Query(ctx, senderErrorsQuery, f, t)
	if err != nil {
		return nil, fmt.Errorf("sender health: errors: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var (
			s    string
			code int32
			n    uint64
		)
		if err := rows.Scan(&s, &code, &n); err != nil {
			return nil, fmt.Errorf("sender health: errors: %w", err)
		}
		if i, ok := idx[s]; ok {
			out[i].Errors = append(out[i].Errors, CodeCount{Code: code, Contacts: n})
		}
	}
	return out, rows.Err()
}

// DayVolume is one day's distinct events of a kind, and whether it is an anomaly.
type DayVolume struct {
	Day     string  `json:"day"` // YYYY-MM-DD, UTC
	Kind    string  `json:"kind"`
	Count   uint64  `json:"count"`
	Mean    float64 `json:"mean"`  // of the history before the day
	Sigma   float64 `json:"sigma"` // population standard deviation of that history
	Anomaly bool    `json:"anomaly"`
}

// AnomalyReport lists daily volumes with their flags.
type AnomalyReport struct {
	History int         `json:"history"` // days of history each day is compared with
	Days    []DayVolume `json:"days"`
}

const dailyQuery = `SELECT kind, toDate(ts) AS d, uniqExact(event_id)
FROM events WHERE kind IN ('sent', 'failed', 'opted_out') AND ts_ms >= ? AND ts_ms < ?
GROUP BY kind, d ORDER BY kind, d`

// Anomalies flags the days in [from, to) whose volume of sent, failed or opted_out
// events lies outside mean ± 2σ of the history days before it (days without events
// count as 0). A day needs at least 3 days of history to be judged.
func Anomalies(ctx context.Context, conn driver.Conn, from, to time.Time, history int) (AnomalyReport, error) {
	rep := AnomalyReport{History: history, Days: []DayVolume{}}
	from = from.UTC().Truncate(24 * time.Hour)
	start := from.AddDate(0, 0, -history)
	rows, err := conn.Query(ctx, dailyQuery, uint64(start.UnixMilli()), uint64(to.UnixMilli()))
	if err != nil {
		return rep, fmt.Errorf("anomalies: %w", err)
	}
	defer rows.Close()
	counts := map[string]map[string]uint64{}
	for rows.Next() {
		var (
			kind string
			d    time.Time
			n    uint64
		)
		if err := rows.Scan(&kind, &d, &n); err != nil {
			return rep, fmt.Errorf("anomalies: %w", err)
		}
		if counts[kind] == nil {
			counts[kind] = map[string]uint64{}
		}
		counts[kind][d.Format(time.DateOnly)] = n
	}
	if err := rows.Err(); err != nil {
		return rep, fmt.Errorf("anomalies: %w", err)
	}
	for _, kind := range []string{"sent", "failed", "opted_out"} {
		c := counts[kind]
		for day := from; day.Before(to); day = day.AddDate(0, 0, 1) {
			var hist []float64
			for h := day.AddDate(0, 0, -history); h.Before(day); h = h.AddDate(0, 0, 1) {
				if !h.Before(start) {
					hist = append(hist, float64(c[h.Format(time.DateOnly)]))
				}
			}
			v := DayVolume{Day: day.Format(time.DateOnly), Kind: kind, Count: c[day.Format(time.DateOnly)]}
			if len(hist) >= 3 {
				v.Mean, v.Sigma = meanSigma(hist)
				v.Anomaly = math.Abs(float64(v.Count)-v.Mean) > 2*v.Sigma
			}
			rep.Days = append(rep.Days, v)
		}
	}
	return rep, nil
}

func meanSigma(xs []float64) (mean, sigma float64) {
	for _, x := range xs {
		mean += x
	}
	mean /= float64(len(xs))
	for _, x := range xs {
		sigma += (x - mean) * (x - mean)
	}
	return mean, math.Sqrt(sigma / float64(len(xs)))
}

// HoldoutReason is the skip reason of the contacts a campaign holds out as its control
// group: they are chosen like the others but not sent to, so that what they do anyway
// can be compared with what the sent contacts do.
const HoldoutReason = "holdout"

// DefaultLiftWindow is how long after the send (or the hold-out) a conversion counts.
const DefaultLiftWindow = 7 * 24 * time.Hour

// LiftReport compares a campaign's contacts sent to with its holdout group: the share
// of each that converted (any conversion of the contact, attributed to a campaign or
// not) within the window after its send or hold-out, and the revenue of those orders.
type LiftReport struct {
	Campaign     string    `json:"campaign_id"`
	WindowMS     float64   `json:"window_ms"`
	Treated      LiftGroup `json:"treated"`
	Holdout      LiftGroup `json:"holdout"`
	Lift         float64   `json:"lift"`          // Treated.Rate - Holdout.Rate
	RelativeLift float64   `json:"relative_lift"` // Lift / Holdout.Rate; 0 when the holdout rate is 0
	// Z and PValue: the two-proportion z-test of Treated against Holdout.
	Z      float64 `json:"z"`
	PValue float64 `json:"p_value"`
}

// LiftGroup is one side of a LiftReport.
type LiftGroup struct {
	Contacts  uint64   `json:"contacts"`
	Converted uint64   `json:"converted"` // contacts with at least one order in the window
	Rate      float64  `json:"rate"`
	Revenue   []Amount `json:"revenue"` // per currency, by currency code
}

// Amount is the orders and their total value in one currency.
type Amount struct {
	Currency string  `json:"currency"`
	Orders   uint64  `json:"orders"`
	Value    float64 `json:"value"`
}

// liftOrders pairs each treated or held-out contact of a campaign (its group and the
// time of its send or hold-out) with its distinct orders (an order tracked twice, even
// attributed to two campaigns, counts once; events without an order id are orders of
// their own). Parameters: campaign, campaign.
const liftOrders = `SELECT contact_id, grp, ref, o_ts, o_value, o_currency
FROM (
    SELECT contact_id, if(max(kind = 'sent'), 'treated', 'holdout') AS grp,
        if(max(kind = 'sent'), minIf(ts_ms, kind = 'sent'), min(ts_ms)) AS ref
    FROM events
    WHERE campaign_id = ? AND (kind = 'sent' OR (kind = 'skipped' AND reason = '` + HoldoutReason + `'))
    GROUP BY contact_id
)
ALL LEFT JOIN (
    SELECT contact_id, if(order_id = '', event_id, order_id) AS order_key,
        min(ts_ms) AS o_ts, any(value) AS o_value, any(currency) AS o_currency
    FROM events
    WHERE kind = 'converted' AND contact_id IN (SELECT contact_id FROM events WHERE campaign_id = ? AND kind IN ('sent', 'skipped'))
    GROUP BY contact_id, order_key
) USING contact_id`

// Parameters: window ms, campaign, campaign.
const liftRatesQuery = `SELECT grp, count(), countIf(orders > 0) FROM (
    SELECT contact_id, any(grp) AS grp, countIf(o_ts >= ref AND o_ts < ref + ?) AS orders
    FROM (` + liftOrders + `)
    GROUP BY contact_id
) GROUP BY grp`

// Parameters: campaign, campaign, window ms.
const liftRevenueQuery = `SELECT grp, o_currency, count(), sum(o_value)
FROM (` + liftOrders + `)
WHERE o_ts >= ref AND o_ts < ref + ?
GROUP BY grp, o_currency
ORDER BY grp, o_currency`

// Lift measures a campaign against its holdout group (contacts skipped with
// HoldoutReason): conversion rates within window (≤ 0: DefaultLiftWindow) after each
// contact's send or hold-out, the difference with a two-proportion z-test, and revenue
// per currency. A campaign without a holdout has an empty Holdout group.
//
// The groups' sizes come from campaign_words, and only the converters' events are read
// (liftFromWords).
func Lift(ctx context.Context, conn driver.Conn, campaign string, window time.Duration) (LiftReport, error) {
	return liftFromWords(ctx, conn, campaign, window)
}

// liftFromEvents is Lift grouping every treated and held-out contact's events: the
// definition liftFromWords must match.
func liftFromEvents(ctx context.Context, conn driver.Conn, campaign string, window time.Duration) (LiftReport, error) {
	if window <= 0 {
		window = DefaultLiftWindow
	}
	rep := LiftReport{Campaign: campaign, WindowMS: float64(window.Milliseconds()),
		Treated: LiftGroup{Revenue: []Amount{}}, Holdout: LiftGroup{Revenue: []Amount{}}}
	group := func(name string) *LiftGroup {
		if name == "holdout" {
			return &rep.Holdout
		}
		return &rep.Treated
	}
	w := uint64(window.Milliseconds())
	rows, err := conn.Query(ctx, liftRatesQuery, w, campaign, campaign)
	if err != nil {
		return rep, fmt.Errorf("lift of %s: %w", campaign, err)
	}
	for rows.Next() {
		var (
			name    string
			n, conv uint64
		)
		if err := rows.Scan(&name, &n, &conv); err != nil {
			rows.Close()
			return rep, fmt.Errorf("lift of %s: %w", campaign, err)
		}
		g := group(name)
		g.Contacts, g.Converted, g.Rate = n, conv, ratio(conv, n)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return rep, fmt.Errorf("lift of %s: %w", campaign, err)
	}
	rows, err = conn.Query(ctx, liftRevenueQuery, campaign, campaign, w)
	if err != nil {
		return rep, fmt.Errorf("lift of %s: revenue: %w", campaign, err)
	}
	defer rows.Close()
	for rows.Next() {
		var (
			name string
			a    Amount
		)
		if err := rows.Scan(&name, &a.Currency, &a.Orders, &a.Value); err != nil {
			return rep, fmt.Errorf("lift of %s: revenue: %w", campaign, err)
		}
		g := group(name)
		g.Revenue = append(g.Revenue, a)
	}
	if err := rows.Err(); err != nil {
		return rep, fmt.Errorf("lift of %s: revenue: %w", campaign, err)
	}
	rep.compare()
	return rep, nil
}

// compare fills the lift, the relative lift and the two-proportion z-test from the
// groups' rates.
func (rep *LiftReport) compare() {
	t, h := rep.Treated, rep.Holdout
	rep.Lift = t.Rate - h.Rate
	if h.Rate > 0 {
		rep.RelativeLift = rep.Lift / h.Rate
	}
	rep.Z, rep.PValue = twoProportionZ(t.Converted, t.Contacts, h.Converted, h.Contacts)
}
