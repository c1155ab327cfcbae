package links

import (
	"errors"
	"strings"
	"testing"
)

func TestUnsubscribeTokens(t *testing.T) {
	c, err := NewCodec([]byte("0123456789abcdef-key"))
	if err != nil {
		t.Fatal(err)
	}
	want := Unsubscribe{Campaign: "spring-42", Contact: 4_000_000_001, Channel: "email"}
	tok, err := c.UnsubscribeToken(want)
	if err != nil {
		t.Fatal(err)
	}
	got, err := c.ParseUnsubscribe(tok)
	if err != nil || got != want {
		t.Fatalf("round trip: %+v, %v; want %+v", got, err, want)
	}
	other, _ := NewCodec([]byte("another-key-0123456789"))
	if _, err := other.ParseUnsubscribe(tok); !errors.Is(err, ErrBadToken) {
		t.Fatalf("another key's token: %v", err)
	}
	// A click token is never an unsubscribe token, and the other way round.
	click, _ := c.Token(Click{Campaign: "spring-42", Contact: 7, URL: "https://shop.example.com/"})
	if _, err := c.ParseUnsubscribe(click); !errors.Is(err, ErrBadToken) {
		t.Fatalf("a click token parsed as an unsubscribe: %v", err)
	}
	if _, err := c.Parse(tok); !errors.Is(err, ErrBadToken) {
		t.Fatalf("an unsubscribe token parsed as a click: %v", err)
	}
	// Every single-character change is refused.
	for i := range tok {
		b := []byte(tok)
		b[i] ^= 1
		if _, err := c.ParseUnsubscribe(string(b)); err == nil {
			t.Fatalf("token altered at %d accepted", i)
		}
	}
	tr := &Tracker{Codec: c, Base: "https://t.example.com"}
	u, err := tr.UnsubscribeURL("spring-42", 9, "email")
	if err != nil || !strings.HasPrefix(u, "https://t.example.com/u/") {
		t.Fatalf("url %q, %v", u, err)
	}
}

func FuzzParseUnsubscribe(f *testing.F) {
	c, _ := NewCodec([]byte("0123456789abcdef-key"))
	tok, _ := c.UnsubscribeToken(Unsubscribe{Campaign: "c", Contact: 1, Channel: "email"})
	f.Add(tok)
	f.Add("")
	f.Add("VQ")
	f.Fuzz(func(t *testing.T, s string) {
		u, err := c.ParseUnsubscribe(s)
		if err != nil {
			return
		}
		again, err := c.UnsubscribeToken(u)
		if err != nil {
			t.Fatalf("a parsed token does not encode again: %+v: %v", u, err)
		}
		if back, err := c.ParseUnsubscribe(again); err != nil || back != u {
			t.Fatalf("round trip of %+v: %+v, %v", u, back, err)
		}
	})
}
