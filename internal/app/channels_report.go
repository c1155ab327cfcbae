package app

import (
	"context"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/herald-dev/herald/analytics"
)

// ChannelsReport is Report of a campaign's funnel per channel with its fallbacks.
func ChannelsReport(ctx context.Context, conn driver.Conn, p ReportParams) (analytics.ChannelsReport, error) {
	return reportAs[analytics.ChannelsReport](ctx, conn, "channels", p)
}

// PrintChannelLines writes, under a campaign's funnel (PrintFunnel), one line per
// channel and one for the fallbacks, when the campaign used more than one channel;
// nothing otherwise.
func PrintChannelLines(w io.Writer, r analytics.ChannelsReport) {
	if !r.MultiChannel() {
		return
	}
	for _, c := range r.Channels {
		fmt.Fprintf(w, "  channel    %-10s %s", c.Channel, StepCounts(c.Steps[:4]))
		if c.FallbackIn > 0 {
			fmt.Fprintf(w, "; %d sent, %d delivered by fallback", c.FallbackSent, c.FallbackDelivered)
		}
		if c.FallbackOut > 0 {
			fmt.Fprintf(w, "; %d fell back from it", c.FallbackOut)
		}
		fmt.Fprintln(w)
	}
	fmt.Fprintf(w, "  fallback   %s\n", FallbackSummary(r))
}

// StepCounts is "191 queued, 171 sent, …" for steps.
func StepCounts(steps []analytics.FunnelStep) string {
	parts := make([]string, len(steps))
	for i, s := range steps {
		parts[i] = fmt.Sprintf("%d %s", s.Contacts, s.Name)
	}
	return strings.Join(parts, ", ")
}

// FallbackSummary says in one line how many contacts fell back and why, and how many
// a fallback reached.
func FallbackSummary(r analytics.ChannelsReport) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d contacts fell back", r.FellBack)
	if len(r.FallbackReasons) > 0 {
		b.WriteString(" (")
		for i, x := range r.FallbackReasons {
			if i > 0 {
				b.WriteString(", ")
			}
			fmt.Fprintf(&b, "%s %d", x.Reason, x.Contacts)
		}
		b.WriteString(")")
	}
	fmt.Fprintf(&b, "; %d reached first through a fallback, %d only through one; %d late receipts on the first channel",
		r.ReachedByFallback, r.ReachedOnlyByFallback, r.LateFirstChannel)
	return b.String()
}

// ReachTimeText is "p50 1.2s, p90 4s, p99 10m0s (176 contacts)".
func ReachTimeText(t analytics.ReachTime) string {
	ms := func(n uint64) string { return (time.Duration(n) * time.Millisecond).String() }
	if t.Contacts == 0 {
		return "no contact reached"
	}
	return fmt.Sprintf("p50 %s, p90 %s, p99 %s (%d contacts)", ms(t.P50MS), ms(t.P90MS), ms(t.P99MS), t.Contacts)
}

// CheckChannels compares a campaign's funnel per channel with each channel sandbox's
// truth (by channel name: "whatsapp" from SandboxTruth, "sms" from SMSTruth, …): on
// every channel given, sent, delivered and read must be the sandbox's accepted,
// delivered and read. A channel the report lacks counts as zero. A sandbox records
// nothing it refused (an outage's sends), so after a fallback the two channels' sent
// figures add up to the messages that really went out.
func CheckChannels(r analytics.ChannelsReport, truths map[string]Truth) error {
	got := map[string]map[string]uint64{}
	for _, c := range r.Channels {
		got[c.Channel] = map[string]uint64{}
		for _, s := range c.Steps {
			got[c.Channel][s.Name] = s.Contacts
		}
	}
	for _, ch := range sortedChannels(truths) {
		t := truths[ch]
		for _, w := range []struct {
			step string
			n    uint64
		}{{"sent", t.Accepted}, {"delivered", t.Delivered}, {"read", t.Read}} {
			if g := got[ch][w.step]; g != w.n {
				return fmt.Errorf("%s %s: ClickHouse says %d, the sandbox %d", ch, w.step, g, w.n)
			}
		}
	}
	return nil
}

func sortedChannels(m map[string]Truth) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
