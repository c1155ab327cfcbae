package sms

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"
)

func TestParseSenders(t *testing.T) {
	m, err := ParseSenders([]byte(`{
	 "sms-us-1": {"account_sid": "AC1", "auth_token": "secret-1", "from": "+14155550100", "type": "long_code", "rate": 1, "validity_period": 3600},
	 "sms-us-2": {"account_sid": "AC1", "auth_token": "secret-1", "messaging_service_sid": "MG1", "type": "short_code"}}`))
	if err != nil {
		t.Fatal(err)
	}
	want := SenderConfig{AccountSID: "AC1", AuthToken: "secret-1", From: "+14155550100", Type: LongCode, Rate: 1, ValidityPeriod: time.Hour}
	if m["sms-us-1"] != want || m["sms-us-2"].MessagingServiceSID != "MG1" || m["sms-us-2"].Type != ShortCode {
		t.Fatalf("ParseSenders = %+v", m)
	}
	for name, in := range map[string]string{
		"unknown field": `{"s": {"account_sid": "AC1", "auth_token": "t", "from": "+1", "token": "t"}}`,
		"invalid":       `{"s": {"account_sid": "AC1", "from": "+1"}}`,
		"not json":      `{"s": `,
		"bad type":      `{"s": {"account_sid": "AC1", "auth_token": "t", "from": "+1", "type": "carrier_pigeon"}}`,
	} {
		if _, err := ParseSenders([]byte(in)); err == nil {
			t.Errorf("%s: accepted %s", name, in)
		}
	}
}

// TestSenderConfigNeverPrintsTheToken: JSON, %v and %s leave the auth token out.
func TestSenderConfigNeverPrintsTheToken(t *testing.T) {
	c := SenderConfig{AccountSID: "AC1", AuthToken: "secret-1", From: "+14155550100", Type: TollFree, ValidityPeriod: 90 * time.Second}
	b, err := json.Marshal(map[string]SenderConfig{"s": c})
	if err != nil {
		t.Fatal(err)
	}
	for _, out := range []string{string(b), fmt.Sprint(c), fmt.Sprintf("%+v", c), c.String()} {
		if strings.Contains(out, "secret-1") {
			t.Fatalf("token printed: %s", out)
		}
	}
	if !strings.Contains(string(b), `"validity_period":90`) || !strings.Contains(string(b), `"type":"toll_free"`) {
		t.Fatalf("JSON %s", b)
	}
}
