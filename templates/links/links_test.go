package links

import (
	"errors"
	"strings"
	"testing"
)

var testKey = []byte("0123456789abcdef0123456789abcdef")

func TestTokenRoundTrip(t *testing.T) {
	c, err := NewCodec(testKey)
	if err != nil {
		t.Fatal(err)
	}
	for _, cl := range []Click{
		{Campaign: "spring-42", Contact: 9, Index: 0, URL: "https://shop.example.com/sale?utm_source=wa&x=1#top"},
		{Campaign: "", Contact: 1<<32 - 1, Index: MaxLinks - 1, URL: "http://a.b"},
	} {
		tok, err := c.Token(cl)
		if err != nil {
			t.Fatal(err)
		}
		if strings.ContainsAny(tok, "/+=?&#") {
			t.Fatalf("token %q is not URL-path safe", tok)
		}
		got, err := c.Parse(tok)
		if err != nil || got != cl {
			t.Fatalf("Parse(Token(%+v)) = %+v, %v", cl, got, err)
		}
	}
}

func TestTokenRefused(t *testing.T) {
	c, _ := NewCodec(testKey)
	other, _ := NewCodec([]byte("another key, also long enough"))
	tok, _ := c.Token(Click{Campaign: "c", Contact: 7, Index: 1, URL: "https://example.com/"})
	b := []byte(tok)
	b[len(b)/2] ^= 1
	for name, tk := range map[string]string{
		"other key": func() string {
			s, _ := other.Token(Click{Campaign: "c", Contact: 7, Index: 1, URL: "https://example.com/"})
			return s
		}(),
		"tampered":  string(b),
		"truncated": tok[:len(tok)-3],
		"garbage":   "not*base64",
		"empty":     "",
		"huge":      strings.Repeat("A", 4000),
	} {
		if _, err := c.Parse(tk); !errors.Is(err, ErrBadToken) {
			t.Errorf("%s: %v, want ErrBadToken", name, err)
		}
	}
	for _, u := range []string{"javascript:alert(1)", "/relative", "data:text/html,x", "https://", strings.Repeat("x", MaxURL+1)} {
		if _, err := c.Token(Click{URL: u}); err == nil {
			t.Errorf("Token accepted URL %.40q", u)
		}
	}
	if _, err := NewCodec([]byte("short")); err == nil {
		t.Error("NewCodec accepted a 5-byte key")
	}
}

func TestRewrite(t *testing.T) {
	c, _ := NewCodec(testKey)
	tr := &Tracker{Codec: c, Base: "https://t.example.com"}
	text := "Hi! See https://shop.example.com/sale?x=1. Or (https://example.com/a_(b)) and https://t.example.com/c/abc, http://x.y/z!"
	got, n, err := tr.Rewrite(text, "camp", 5, 0)
	if err != nil || n != 3 {
		t.Fatalf("Rewrite: %d links, %v\n%s", n, err, got)
	}
	var urls []string
	for _, m := range urlRE.FindAllString(got, -1) {
		m = trimURL(m)
		if tok, ok := strings.CutPrefix(m, "https://t.example.com/c/"); ok && tok != "abc" {
			cl, err := c.Parse(tok)
			if err != nil || cl.Campaign != "camp" || cl.Contact != 5 || cl.Index != len(urls) {
				t.Fatalf("token %d: %+v, %v", len(urls), cl, err)
			}
			urls = append(urls, cl.URL)
		}
	}
	want := []string{"https://shop.example.com/sale?x=1", "https://example.com/a_(b)", "http://x.y/z"}
	if strings.Join(urls, " ") != strings.Join(want, " ") {
		t.Fatalf("targets %q, want %q\n%s", urls, want, got)
	}
	if !strings.HasPrefix(got, "Hi! See https://t.example.com/c/") || !strings.HasSuffix(got, "!") || !strings.Contains(got, "https://t.example.com/c/abc,") {
		t.Fatalf("text around the links changed: %s", got)
	}
	if same, n, _ := tr.Rewrite("no links here", "camp", 5, 0); same != "no links here" || n != 0 {
		t.Fatalf("text without links: %q, %d", same, n)
	}
}

// FuzzParse: no panic on any token; what parses re-encodes to the same token.
func FuzzParse(f *testing.F) {
	c, _ := NewCodec(testKey)
	tok, _ := c.Token(Click{Campaign: "c", Contact: 7, Index: 1, URL: "https://example.com/"})
	f.Add(tok)
	f.Add("")
	f.Add("AQcBAWM")
	f.Fuzz(func(t *testing.T, s string) {
		cl, err := c.Parse(s)
		if err != nil {
			return
		}
		again, err := c.Token(cl)
		if err != nil || again != s {
			t.Fatalf("Parse(%q) = %+v but Token gives %q, %v", s, cl, again, err)
		}
	})
}

// FuzzRewrite: no panic; every rewritten link parses back; text without URLs is kept.
func FuzzRewrite(f *testing.F) {
	c, _ := NewCodec(testKey)
	tr := &Tracker{Codec: c, Base: "https://t.example.com"}
	f.Add("See https://a.example/x?y=1. Bye")
	f.Add("(http://x.y/)) https://")
	f.Fuzz(func(t *testing.T, text string) {
		got, n, err := tr.Rewrite(text, "c", 1, 0)
		if err != nil {
			t.Fatalf("Rewrite(%q): %v", text, err)
		}
		if n == 0 && got != text {
			t.Fatalf("no links but text changed: %q -> %q", text, got)
		}
		if n > MaxLinks {
			t.Fatalf("%d links", n)
		}
	})
}
