package cli

import (
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/herald-dev/herald/dispatcher"
)

// The channel-policy flags of `herald campaigns create` (channel failover).
func failoverFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "channels", Usage: "channel policy: channels in order, e.g. whatsapp,sms,email; each contact gets the first with an address and consent, the next ones are fallbacks (the first is the --sender's channel)"},
		&cli.StringSliceFlag{Name: "sender-for", Usage: "a fallback channel's sender, CHANNEL=SENDER_ID (repeatable; e.g. sms=S2)"},
		&cli.StringSliceFlag{Name: "template-for", Usage: "a fallback channel's template, CHANNEL=NAME (repeatable; default: --template)"},
		&cli.StringFlag{Name: "fallback-on", Usage: "what moves a contact to the next channel: permanent_failure, circuit_open, not_delivered_within (comma-separated; default the first two, and the third with --not-delivered-within)"},
		&cli.DurationFlag{Name: "not-delivered-within", Usage: "fall back when the first send has no delivery or read report after this long, e.g. 10m"},
	}
}

// failoverFields reads the channel-policy flags into the campaign.
func failoverFields(c *cli.Context, cp *dispatcher.Campaign) error {
	pairs := func(flag string) (map[string][]string, error) {
		m := map[string][]string{}
		for _, v := range c.StringSlice(flag) {
			ch, val, ok := strings.Cut(v, "=")
			if !ok || ch == "" || val == "" {
				return nil, usage("--%s %q: want CHANNEL=VALUE, e.g. sms=S2", flag, v)
			}
			m[ch] = append(m[ch], val)
		}
		return m, nil
	}
	senders, err := pairs("sender-for")
	if err != nil {
		return err
	}
	tpls, err := pairs("template-for")
	if err != nil {
		return err
	}
	var chans []string
	for _, ch := range strings.Split(c.String("channels"), ",") {
		if ch = strings.TrimSpace(ch); ch != "" {
			chans = append(chans, ch)
		}
	}
	if len(chans) > 0 {
		if cp.Channel != "" && chans[0] != cp.Channel {
			return usage("--channels starts with %s but --channel is %s: the first channel is the campaign's", chans[0], cp.Channel)
		}
		cp.Channel = chans[0]
		for _, ch := range chans[1:] {
			cs := dispatcher.ChannelSenders{Channel: ch, Senders: senders[ch]}
			if t := tpls[ch]; len(t) > 0 {
				cs.Template = t[len(t)-1]
			}
			cp.Fallback = append(cp.Fallback, cs)
		}
	} else if len(senders) > 0 || len(tpls) > 0 {
		return usage("--sender-for and --template-for need --channels")
	}
	for _, t := range strings.Split(c.String("fallback-on"), ",") {
		if t = strings.TrimSpace(t); t != "" {
			cp.FallbackOn = append(cp.FallbackOn, t)
		}
	}
	cp.NotDeliveredWithinMS = c.Duration("not-delivered-within").Milliseconds()
	return nil
}

// failoverBody adds the channel-policy fields to a remote create request's body.
func failoverBody(cp dispatcher.Campaign, body map[string]any) {
	if len(cp.Fallback) > 0 {
		body["fallback"] = cp.Fallback
		body["channel"] = cp.Channel
	}
	if len(cp.FallbackOn) > 0 {
		body["fallback_on"] = cp.FallbackOn
	}
	if cp.NotDeliveredWithinMS > 0 {
		body["not_delivered_within_ms"] = cp.NotDeliveredWithinMS
	}
}
