package app

import (
	"bytes"
	"strings"
	"testing"

	"github.com/herald-dev/herald/analytics"
)

func channelFunnel(ch string, counts ...uint64) analytics.ChannelFunnel {
	names := []string{"queued", "sent", "delivered", "read", "clicked", "replied"}
	c := analytics.ChannelFunnel{Channel: ch}
	for i, n := range counts {
		c.Steps = append(c.Steps, analytics.FunnelStep{Name: names[i], Contacts: n})
	}
	return c
}

// CheckChannels holds each channel's sent, delivered and read to its sandbox's truth,
// and names the first figure that differs.
func TestCheckChannels(t *testing.T) {
	rep := analytics.ChannelsReport{Channels: []analytics.ChannelFunnel{
		channelFunnel("whatsapp", 100, 80, 70, 40, 0, 0),
		channelFunnel("sms", 20, 20, 18, 0, 0, 0),
	}}
	for _, tc := range []struct {
		name   string
		truths map[string]Truth
		err    string
	}{
		{"equal", map[string]Truth{"whatsapp": {Accepted: 80, Delivered: 70, Read: 40}, "sms": {Accepted: 20, Delivered: 18}}, ""},
		{"a channel's sends differ", map[string]Truth{"whatsapp": {Accepted: 80, Delivered: 70, Read: 40}, "sms": {Accepted: 21, Delivered: 18}}, "sms sent: ClickHouse says 20, the sandbox 21"},
		{"reads differ", map[string]Truth{"whatsapp": {Accepted: 80, Delivered: 70, Read: 41}}, "whatsapp read"},
		{"a channel missing from the report", map[string]Truth{"email": {Accepted: 1}}, "email sent: ClickHouse says 0, the sandbox 1"},
	} {
		err := CheckChannels(rep, tc.truths)
		if (err == nil) != (tc.err == "") || err != nil && !strings.Contains(err.Error(), tc.err) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.err)
		}
	}
}

// The funnel's channel lines appear only for a campaign that used several channels.
func TestPrintChannelLines(t *testing.T) {
	var b bytes.Buffer
	PrintChannelLines(&b, analytics.ChannelsReport{Channels: []analytics.ChannelFunnel{channelFunnel("whatsapp", 3, 3, 2, 1, 0, 0)}})
	if b.Len() != 0 {
		t.Errorf("one channel, no fallback: %q", b.String())
	}
	r := analytics.ChannelsReport{FellBack: 1, Channels: []analytics.ChannelFunnel{channelFunnel("whatsapp", 3, 3, 2, 1, 0, 0), channelFunnel("sms", 1, 1, 1, 0, 0, 0)},
		FallbackReasons: []analytics.ReasonCount{{Reason: "circuit_open", Contacts: 1}}}
	r.Channels[1].FallbackIn, r.Channels[1].FallbackSent, r.Channels[1].FallbackDelivered, r.Channels[0].FallbackOut = 1, 1, 1, 1
	PrintChannelLines(&b, r)
	for _, want := range []string{"channel    whatsapp   3 queued, 3 sent, 2 delivered, 1 read; 1 fell back from it",
		"channel    sms        1 queued, 1 sent, 1 delivered, 0 read; 1 sent, 1 delivered by fallback", "1 contacts fell back (circuit_open 1)"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("want %q in\n%s", want, b.String())
		}
	}
}
