package analytics

import (
	"context"
	"fmt"
	"sort"
	"strings"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// Fallback reasons a fallback event carries (events.Fallback's Reason).
const (
	FallbackPermanentFailure   = "permanent_failure"
	FallbackCircuitOpen        = "circuit_open"
	FallbackNotDeliveredWithin = "not_delivered_within"
)

// channelSteps are the steps of ChannelFunnel.Steps, in order.
var channelSteps = []string{"queued", "sent", "delivered", "read", "clicked", "replied"}

// ChannelsReport is a campaign's funnel per channel with its fallbacks (issue 20): how
// many contacts each channel reached, how many got there because a send fell back, why
// sends fell back, and how long contacts took to be reached.
//
// A contact's first channel is the one its first fallback left (events.from_channel), or
// its only channel when no fallback fired; its fallback channel is the one its last
// fallback moved to. "Reached" is a delivered or read status on any channel, so a
// contact reached on both channels (the first channel's receipt arriving after the
// fallback fired) is reached once; such late receipts are counted apart in
// LateFirstChannel and in the first channel's own funnel.
type ChannelsReport struct {
	Campaign string `json:"campaign_id"`
	// Contacts: distinct contacts queued.
	Contacts uint64 `json:"contacts"`
	// Reached: distinct contacts with a delivered or read status on any channel.
	Reached uint64 `json:"reached"`
	// FellBack: distinct contacts with a fallback event.
	FellBack uint64 `json:"fell_back"`
	// ReachedByFallback: contacts whose first delivery was on their fallback channel.
	ReachedByFallback uint64 `json:"reached_by_fallback"`
	// ReachedOnlyByFallback: contacts delivered on their fallback channel and never on
	// their first channel (failed, undeliverable, or never sent there).
	ReachedOnlyByFallback uint64 `json:"reached_only_by_fallback"`
	// LateFirstChannel: contacts whose first channel delivered after the fallback fired.
	LateFirstChannel uint64 `json:"late_first_channel"`
	// SentTwiceWithoutFallback and SentOnMoreThanTwoChannels break invariant 9 (at most
	// one message per (campaign, contact) unless a fallback fired, never more than two):
	// both must be 0.
	SentTwiceWithoutFallback  uint64 `json:"sent_twice_without_fallback"`
	SentOnMoreThanTwoChannels uint64 `json:"sent_on_more_than_two_channels"`

	Channels []ChannelFunnel `json:"channels"` // most queued first, then by name
	// FallbackReasons: distinct contacts per fallback reason, most frequent first.
	FallbackReasons []ReasonCount `json:"fallback_reasons"`
	// Fallbacks: distinct contacts per (reason, from, to), most frequent first.
	Fallbacks []FallbackCount `json:"fallbacks"`

	// TimeToReach: from a contact's first queued event to its first delivery on any
	// channel, over the contacts reached. TimeToReachByFallback: the same over the
	// contacts of ReachedByFallback.
	TimeToReach           ReachTime `json:"time_to_reach"`
	TimeToReachByFallback ReachTime `json:"time_to_reach_by_fallback"`
}

// ChannelFunnel is one channel's funnel in a campaign: Steps are queued, sent,
// delivered, read, clicked, replied, in distinct contacts. Queued … read follow the
// funnel's furthest-step rule on this channel's events (a later step implies the
// earlier ones; a contact queued on the channel, moved to it by a fallback, or failed
// on it counts as queued there); clicked and replied are contacts with such an event.
// An event without a channel (a click) counts for the channel of the contact's latest
// send.
type ChannelFunnel struct {
	Channel string       `json:"channel"`
	Steps   []FunnelStep `json:"steps"`
	// Failed: contacts with a failed event on the channel.
	Failed uint64 `json:"failed"`
	// FallbackIn: contacts a fallback moved to this channel; FallbackSent and
	// FallbackDelivered: of those, sent and delivered here (the fallback sends).
	FallbackIn        uint64 `json:"fallback_in"`
	FallbackSent      uint64 `json:"fallback_sent"`
	FallbackDelivered uint64 `json:"fallback_delivered"`
	// FallbackOut: contacts a fallback moved away from this channel.
	FallbackOut uint64 `json:"fallback_out"`
}

// FallbackCount is how many distinct contacts fell back from one channel to another
// for one reason.
type FallbackCount struct {
	Reason   string `json:"reason"`
	From     string `json:"from_channel"`
	To       string `json:"to_channel"`
	Contacts uint64 `json:"contacts"`
}

// ReachTime is a distribution of times to reach, in milliseconds (exact quantiles);
// all zero when Contacts is 0.
type ReachTime struct {
	Contacts uint64 `json:"contacts"`
	P50MS    uint64 `json:"p50_ms"`
	P90MS    uint64 `json:"p90_ms"`
	P99MS    uint64 `json:"p99_ms"`
}

// channelFunnelQuery gives per channel the contacts at each step, failed, and the
// fallback sends. Rows are grouped per (contact, channel) first, so duplicated events
// and arrival order change nothing, and a contact counts once per channel. The join
// that gives a channel-less event its contact's latest send channel reads only the
// contacts with such events (clicks). Parameters: campaign three times.
const channelFunnelQuery = `SELECT ch,
    countIf(stage >= 1), countIf(stage >= 2), countIf(stage >= 3), countIf(stage >= 4),
    countIf(clicked), countIf(replied), countIf(failed),
    countIf(fb_in), countIf(fb_in AND stage >= 2), countIf(fb_in AND stage >= 3)
FROM (
    SELECT contact_id, if(channel = '', last_sent, channel) AS ch,
           max(multiIf(kind = 'read', 4, kind = 'delivered', 3, kind = 'sent', 2, kind IN ('queued', 'fallback', 'failed'), 1, 0)) AS stage,
           max(kind = 'clicked') AS clicked,
           max(kind = 'replied') AS replied,
           max(kind = 'failed') AS failed,
           max(kind = 'fallback') AS fb_in
    FROM (
        SELECT contact_id, kind, channel FROM events
        WHERE campaign_id = ? AND kind IN ('queued', 'fallback', 'sent', 'failed', 'delivered', 'read', 'clicked', 'replied')
    ) ANY LEFT JOIN (
        SELECT contact_id, argMax(channel, ts_ms) AS last_sent FROM events
        WHERE campaign_id = ? AND kind = 'sent' AND channel != '' AND contact_id IN (
            SELECT contact_id FROM events
            WHERE campaign_id = ? AND kind IN ('queued', 'fallback', 'sent', 'failed', 'delivered', 'read', 'clicked', 'replied') AND channel = '')
        GROUP BY contact_id
    ) USING (contact_id)
    GROUP BY contact_id, ch
)
WHERE ch != ''
GROUP BY ch
ORDER BY countIf(stage >= 1) DESC, ch`

// fallbackCountsQuery counts distinct contacts per fallback reason ('reason'), per
// channel left ('from', in from_channel) and per (reason, from, to) ('pair').
// Parameters: campaign three times.
const fallbackCountsQuery = `SELECT 'reason' AS g, reason, '' AS from_ch, '' AS to_ch, uniqExact(contact_id) AS n
FROM events WHERE campaign_id = ? AND kind = 'fallback' GROUP BY reason
UNION ALL
SELECT 'from' AS g, '' AS reason, from_channel AS from_ch, '' AS to_ch, uniqExact(contact_id) AS n
FROM events WHERE campaign_id = ? AND kind = 'fallback' GROUP BY from_channel
UNION ALL
SELECT 'pair' AS g, reason, from_channel AS from_ch, channel AS to_ch, uniqExact(contact_id) AS n
FROM events WHERE campaign_id = ? AND kind = 'fallback' GROUP BY reason, from_channel, channel`

// reachQuery follows each contact from its first queued event to its first delivery,
// in one pass over the campaign's events grouped by contact, like the funnel (on
// ClickHouse 18.16 a join, a second grouping by channel, or per-contact arrays and
// lambdas cost several times the funnel): per contact its first delivery and its
// channel, its first and fallback channels and when the first fallback fired, and for
// each channel the campaign used (%[1]s: del_i, dmax_i and sent_i per channel, the
// channel bound as a parameter) whether it delivered, when it last did, and whether it
// was sent on; then whether the fallback channel and the first channel delivered (the
// first one after the fallback fired: %[2]s, %[3]s and %[4]s pick channel i's
// figures), on how many channels it was sent (%[5]s), the totals of ChannelsReport and
// the exact quantiles of the times to reach. (A per-contact uniqExact state costs ten
// times the funnel on 18.16: hence the per-channel flags.) Providers stamp deliveries
// coarsely (Meta in seconds, an SMS delivery receipt to the minute), so a delivery is
// taken to be no earlier than the contact's first send was accepted, nor its queueing.
const reachQuery = `SELECT
    countIf(queued), countIf(reached), countIf(fell_back), countIf(by_fb),
    countIf(fb_delivered AND NOT first_delivered), countIf(first_late),
    countIf(send_channels = 2 AND NOT fell_back), countIf(send_channels > 2),
    countIf(timed), quantilesExactIf(0.5, 0.9, 0.99)(wait_ms, timed),
    countIf(timed AND by_fb), quantilesExactIf(0.5, 0.9, 0.99)(wait_ms, timed AND by_fb)
FROM (
    SELECT contact_id,
           countIf(kind = 'queued') > 0 AS queued,
           minIf(ts_ms, kind = 'queued') AS q_ts,
           countIf(kind IN ('delivered', 'read')) > 0 AS reached,
           minIf(ts_ms, kind IN ('delivered', 'read')) AS d_ts,
           argMinIf(channel, ts_ms, kind IN ('delivered', 'read')) AS d_ch,
           countIf(kind = 'fallback') > 0 AS fell_back,
           argMinIf(from_channel, ts_ms, kind = 'fallback') AS first_ch,
           argMaxIf(channel, ts_ms, kind = 'fallback') AS fb_ch,
           minIf(ts_ms, kind = 'fallback') AS fb_ts,
           %[1]s,
           fell_back AND %[2]s AS fb_delivered,
           fell_back AND %[3]s AS first_delivered,
           fell_back AND %[4]s AS first_late,
           %[5]s AS send_channels,
           fell_back AND reached AND d_ch = fb_ch AS by_fb,
           minIf(ts_ms, kind = 'sent') AS s_ts,
           queued AND reached AS timed,
           toUInt64(greatest(greatest(d_ts, s_ts), q_ts) - q_ts) AS wait_ms
    FROM events
    WHERE campaign_id = ? AND kind IN ('queued', 'fallback', 'sent', 'delivered', 'read')
    GROUP BY contact_id
)`

// reachSQL is reachQuery for channels (at least one; "" stands for none) and its
// parameters.
func reachSQL(campaign string, channels []string) (string, []any) {
	if len(channels) == 0 {
		channels = []string{""}
	}
	var per, fb, first, late, sent []string
	var args []any
	for i, ch := range channels {
		per = append(per, fmt.Sprintf("countIf(kind IN ('delivered', 'read') AND channel = ?) > 0 AS del_%[1]d, "+
			"maxIf(ts_ms, kind IN ('delivered', 'read') AND channel = ?) AS dmax_%[1]d, countIf(kind = 'sent' AND channel = ?) > 0 AS sent_%[1]d", i))
		args = append(args, ch, ch, ch)
		sent = append(sent, fmt.Sprintf("sent_%d", i))
		fb = append(fb, fmt.Sprintf("fb_ch = ?, del_%d", i))
		first = append(first, fmt.Sprintf("first_ch = ?, del_%d", i))
		late = append(late, fmt.Sprintf("first_ch = ?, del_%[1]d AND dmax_%[1]d > fb_ts", i))
	}
	// The placeholders' order in the text: the per-channel aggregates, then
	// fb_delivered, first_delivered and first_late, then the campaign.
	all := args
	for range 3 {
		for _, ch := range channels {
			all = append(all, ch)
		}
	}
	all = append(all, campaign)
	q := fmt.Sprintf(reachQuery, strings.Join(per, ",\n           "),
		"multiIf("+strings.Join(fb, ", ")+", 0)", "multiIf("+strings.Join(first, ", ")+", 0)", "multiIf("+strings.Join(late, ", ")+", 0)",
		"toUInt64("+strings.Join(sent, " + ")+")")
	return q, all
}

// ChannelsFunnel computes a campaign's funnel per channel with its fallbacks, who was
// reached only through a fallback, and the time to reach (see ChannelsReport), in
// ClickHouse. Duplicated events and their arrival order change no figure. A campaign
// without events gives zero counts; a campaign without fallbacks gives one channel
// whose queued … read equal Funnel's steps.
func ChannelsFunnel(ctx context.Context, conn driver.Conn, campaign string) (ChannelsReport, error) {
	rep := ChannelsReport{Campaign: campaign, Channels: []ChannelFunnel{}, FallbackReasons: []ReasonCount{}, Fallbacks: []FallbackCount{}}
	rows, err := conn.Query(ctx, channelFunnelQuery, campaign, campaign, campaign)
	if err != nil {
		return rep, fmt.Errorf("channels of %s: %w", campaign, err)
	}
	for rows.Next() {
		var (
			cf ChannelFunnel
			c  = make([]uint64, len(channelSteps))
		)
		if err := rows.Scan(&cf.Channel, &c[0], &c[1], &c[2], &c[3], &c[4], &c[5], &cf.Failed,
			&cf.FallbackIn, &cf.FallbackSent, &cf.FallbackDelivered); err != nil {
			rows.Close()
			return rep, fmt.Errorf("channels of %s: %w", campaign, err)
		}
		cf.Steps = stepsOf(channelSteps, c)
		rep.Channels = append(rep.Channels, cf)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return rep, fmt.Errorf("channels of %s: %w", campaign, err)
	}

	rows, err = conn.Query(ctx, fallbackCountsQuery, campaign, campaign, campaign)
	if err != nil {
		return rep, fmt.Errorf("channels of %s: fallbacks: %w", campaign, err)
	}
	out := map[string]uint64{}
	for rows.Next() {
		var (
			g, reason, from, to string
			n                   uint64
		)
		if err := rows.Scan(&g, &reason, &from, &to, &n); err != nil {
			rows.Close()
			return rep, fmt.Errorf("channels of %s: fallbacks: %w", campaign, err)
		}
		switch g {
		case "reason":
			rep.FallbackReasons = append(rep.FallbackReasons, ReasonCount{Reason: reason, Contacts: n})
		case "from":
			out[from] = n
		case "pair":
			rep.Fallbacks = append(rep.Fallbacks, FallbackCount{Reason: reason, From: from, To: to, Contacts: n})
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return rep, fmt.Errorf("channels of %s: fallbacks: %w", campaign, err)
	}
	sort.Slice(rep.FallbackReasons, func(i, j int) bool {
		a, b := rep.FallbackReasons[i], rep.FallbackReasons[j]
		return a.Contacts > b.Contacts || a.Contacts == b.Contacts && a.Reason < b.Reason
	})
	sort.Slice(rep.Fallbacks, func(i, j int) bool {
		a, b := rep.Fallbacks[i], rep.Fallbacks[j]
		if a.Contacts != b.Contacts {
			return a.Contacts > b.Contacts
		}
		if a.Reason != b.Reason {
			return a.Reason < b.Reason
		}
		if a.From != b.From {
			return a.From < b.From
		}
		return a.To < b.To
	})
	for i := range rep.Channels {
		rep.Channels[i].FallbackOut = out[rep.Channels[i].Channel]
		delete(out, rep.Channels[i].Channel)
	}
	// A channel a fallback left without any event of its own (its circuit was open
	// before the campaign sent there) still shows what left it.
	left := make([]string, 0, len(out))
	for ch := range out {
		if ch != "" {
			left = append(left, ch)
		}
	}
	sort.Strings(left)
	for _, ch := range left {
		rep.Channels = append(rep.Channels, ChannelFunnel{Channel: ch, Steps: stepsOf(channelSteps, make([]uint64, len(channelSteps))), FallbackOut: out[ch]})
	}

	var all, byFB []uint64
	seen := map[string]bool{}
	var used []string
	for _, c := range rep.Channels {
		if !seen[c.Channel] {
			seen[c.Channel] = true
			used = append(used, c.Channel)
		}
	}
	q, args := reachSQL(campaign, used)
	err = conn.QueryRow(ctx, q, args...).Scan(&rep.Contacts, &rep.Reached, &rep.FellBack, &rep.ReachedByFallback,
		&rep.ReachedOnlyByFallback, &rep.LateFirstChannel, &rep.SentTwiceWithoutFallback, &rep.SentOnMoreThanTwoChannels,
		&rep.TimeToReach.Contacts, &all, &rep.TimeToReachByFallback.Contacts, &byFB)
	if err != nil {
		return rep, fmt.Errorf("channels of %s: reach: %w", campaign, err)
	}
	rep.TimeToReach.setQuantiles(all)
	rep.TimeToReachByFallback.setQuantiles(byFB)
	return rep, nil
}

func (r *ReachTime) setQuantiles(q []uint64) {
	if r.Contacts == 0 || len(q) != 3 {
		r.P50MS, r.P90MS, r.P99MS = 0, 0, 0
		return
	}
	r.P50MS, r.P90MS, r.P99MS = q[0], q[1], q[2]
}

// MultiChannel reports whether the campaign used more than one channel (or fell back).
func (r ChannelsReport) MultiChannel() bool { return len(r.Channels) > 1 || r.FellBack > 0 }
