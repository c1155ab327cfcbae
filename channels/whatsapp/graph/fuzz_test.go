package graph

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func addFixtureSeeds(f *testing.F) {
	names, err := filepath.Glob(filepath.Join("testdata", "*.json"))
	if err != nil || len(names) == 0 {
		f.Fatalf("no fixtures: %v", err)
	}
	for _, n := range names {
		b, err := os.ReadFile(n)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
}

// FuzzParseNotification: never panics; whatever it accepts survives a marshal/parse round
// trip unchanged.
func FuzzParseNotification(f *testing.F) {
	addFixtureSeeds(f)
	f.Add([]byte(`{"object":"whatsapp_business_account","entry":[{}]}`))
	f.Add([]byte(`{"object":"whatsapp_business_account","entry":[{"changes":[{"value":{"statuses":[{}]}}]}]}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		n, err := ParseNotification(body)
		if err != nil {
			if n != nil {
				t.Fatalf("error %v with a notification", err)
			}
			return
		}
		first, err := json.Marshal(n)
		if err != nil {
			t.Fatalf("marshal accepted notification: %v", err)
		}
		again, err := ParseNotification(first)
		if err != nil {
			t.Fatalf("re-parse of %s: %v", first, err)
		}
		second, err := json.Marshal(again)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(first, second) {
			t.Fatalf("round trip changed the notification:\n%s\n%s", first, second)
		}
	})
}

// FuzzVerifySignature: never panics, accepts only the exact signature of the body.
func FuzzVerifySignature(f *testing.F) {
	f.Add("app-secret", []byte(`{"object":"whatsapp_business_account"}`), "")
	f.Add("s", []byte("x"), "sha256=00")
	f.Add("s", []byte("x"), Sign("s", []byte("x")))
	f.Add("", []byte(""), "sha256=")
	f.Fuzz(func(t *testing.T, secret string, body []byte, header string) {
		err := VerifySignature(secret, body, header)
		if secret == "" {
			if err == nil {
				t.Fatal("verified without a secret")
			}
			return
		}
		good := Sign(secret, body)
		if err := VerifySignature(secret, body, good); err != nil {
			t.Fatalf("own signature rejected: %v", err)
		}
		if err == nil && !strings.EqualFold(strings.TrimSpace(header), good) {
			t.Fatalf("accepted %q, want %q", header, good)
		}
	})
}
