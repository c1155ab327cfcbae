package cli

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"
)

const cliSMSTemplate = "name: promo_sms\nchannel: sms\nlocale: en_US\nkind: text\nbody: \"Hi, 20% off. Reply STOP to opt out.\"\n"

// A campaign's channel policy from the flags, locally and through the API: the same
// campaign both ways, and the same refusals.
func TestCampaignChannelPolicyFlags(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	rig := newCLIRig(ctx, t)
	local, remote := rig.local, rig.remote
	cmd := func(args []string, rest ...string) (int, string, string) {
		return run(append(append([]string{}, args...), rest...)...)
	}
	for _, args := range [][]string{
		{"senders", "add", "--phone-number-id", "100000000000001", "--token", "t", "--rate", "20"},
		{"senders", "add", "--channel", "sms", "--id", "S2", "--token", "t", "--rate", "20", "--setting", "account_sid=AC1", "--setting", "from=+15550001"},
		{"templates", "add", writeFile(t, "promo.yaml", cliTemplate)},
		{"templates", "add", writeFile(t, "promo_sms.yaml", cliSMSTemplate)},
	} {
		if code, out, errOut := cmd(local, args...); code != 0 {
			t.Fatalf("%v: %s%s", args, out, errOut)
		}
	}
	create := []string{"-o", "json", "campaigns", "create", "--segment", "customer", "--template", "promo", "--sender", "100000000000001",
		"--channels", "whatsapp,sms", "--sender-for", "sms=S2", "--template-for", "sms=promo_sms",
		"--fallback-on", "permanent_failure,not_delivered_within", "--not-delivered-within", "10m"}
	type policy struct {
		Channel  string `json:"channel"`
		Fallback []struct {
			Channel, Template string
			Senders           []string
		} `json:"fallback"`
		FallbackOn           []string `json:"fallback_on"`
		NotDeliveredWithinMS int64    `json:"not_delivered_within_ms"`
	}
	var got [2]policy
	for i, args := range [][]string{local, remote} {
		code, out, errOut := cmd(args, create...)
		if code != 0 {
			t.Fatalf("create: exit %d %s%s", code, out, errOut)
		}
		if err := json.Unmarshal([]byte(out), &got[i]); err != nil {
			t.Fatalf("create: %v\n%s", err, out)
		}
	}
	p := got[0]
	if p.Channel != "whatsapp" || len(p.Fallback) != 1 || p.Fallback[0].Channel != "sms" || p.Fallback[0].Template != "promo_sms" ||
		len(p.Fallback[0].Senders) != 1 || p.Fallback[0].Senders[0] != "S2" || strings.Join(p.FallbackOn, ",") != "permanent_failure,not_delivered_within" ||
		p.NotDeliveredWithinMS != 600000 {
		t.Fatalf("policy %+v", p)
	}
	if la, _ := json.Marshal(got[0]); true {
		if rb, _ := json.Marshal(got[1]); string(la) != string(rb) {
			t.Fatalf("local %s, remote %s", la, rb)
		}
	}
	// Refusals: exit 2 for what the flags say wrong, the same both ways.
	for _, bad := range [][]string{
		{"--sender-for", "sms=S2"}, // without --channels
		{"--channels", "whatsapp,sms", "--sender-for", "sms"},
		{"--channels", "whatsapp,sms", "--sender-for", "sms=100000000000001"}, // a WhatsApp sender for SMS
		{"--channels", "whatsapp,sms", "--sender-for", "sms=S2"},              // promo is a WhatsApp template
		{"--channels", "whatsapp,sms", "--sender-for", "sms=S2", "--template-for", "sms=promo_sms", "--fallback-on", "never"},
	} {
		args := append([]string{"campaigns", "create", "--segment", "customer", "--template", "promo", "--sender", "100000000000001"}, bad...)
		lc, lo, le := cmd(local, args...)
		rc, ro, re := cmd(remote, args...)
		if lc != 2 || rc != 2 {
			t.Errorf("%v: exit %d locally (%s%s), %d remotely (%s%s); want 2", bad, lc, lo, le, rc, ro, re)
		}
	}
}
