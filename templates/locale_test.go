package templates

import (
	"strings"
	"testing"

	"github.com/herald-dev/herald/templates/links"
)

func TestLocaleFilters(t *testing.T) {
	vars := []Variable{
		{Name: "price", Type: TypeNumber, Example: 1234.5},
		{Name: "points", Type: TypeNumber, Example: int64(1234567)},
		{Name: "locale", Type: TypeString, Default: "th_TH"},
		{Name: "timezone", Type: TypeString, Default: "UTC"},
		{Name: "ends", Type: TypeDate, Example: "2025-03-01T20:30:00Z"},
	}
	body := `{{ points | number: locale }} | {{ price | number: locale, 1 }} | {{ price | currency: "", locale }} | ` +
		`{{ price | currency: "USD", locale }} | {{ ends | date: "%d/%m %H:%M", timezone }}`
	tpl := &Template{Name: "loc", Channel: ChannelWhatsApp, Locale: "en_US", Kind: KindText, Variables: vars,
		Variants: []Variant{{Name: "default", Weight: 1, Body: body}}}
	c, err := Compile(tpl)
	if err != nil {
		t.Fatal(err)
	}
	if c.variants[0].text.fast == nil {
		t.Fatal("locale filters with variable arguments are not on the fast path")
	}
	for _, tc := range []struct {
		locale, zone string
		want         string
	}{
		{"th_TH", "Asia/Bangkok", "1,234,567 | 1,234.5 | ฿1,234.50 | $1,234.50 | 02/03 03:30"},
		{"id_ID", "Asia/Jakarta", "1.234.567 | 1.234,5 | Rp 1.235 | $ 1.234,50 | 02/03 03:30"},
		{"pt-BR", "America/Sao_Paulo", "1.234.567 | 1.234,5 | R$ 1.234,50 | $ 1.234,50 | 01/03 17:30"},
		{"de_DE", "Europe/Berlin", "1.234.567 | 1.234,5 | 1.234,50 € | 1.234,50 $ | 01/03 21:30"},
		{"en_US", "America/New_York", "1,234,567 | 1,234.5 | $1,234.50 | $1,234.50 | 01/03 15:30"},
		{"", "", "1,234,567 | 1,234.5 | $1,234.50 | $1,234.50 | 01/03 20:30"}, // unknown locale: en_US; no zone: as given
		{"not a locale!", "", "1,234,567 | 1,234.5 | $1,234.50 | $1,234.50 | 01/03 20:30"},
	} {
		vals := map[string]any{"price": 1234.5, "points": 1234567, "locale": tc.locale, "timezone": tc.zone, "ends": "2025-03-01T20:30:00Z"}
		r, err := c.Render("c", 1, vals)
		if err != nil || r.Text != tc.want {
			t.Errorf("%s: got %q, %v; want %q", tc.locale, r.Text, err, tc.want)
		}
	}

	tpl.Variants[0].Body = `{{ price | currency: "XYZ" }}`
	if _, err := Compile(tpl); err == nil || !strings.Contains(err.Error(), `unknown currency "XYZ"`) {
		t.Fatalf("unknown currency literal: %v", err)
	}
}

func TestTrackLinks(t *testing.T) {
	codec, err := links.NewCodec([]byte("0123456789abcdef0123456789abcdef"))
	if err != nil {
		t.Fatal(err)
	}
	tr := &links.Tracker{Codec: codec, Base: "https://t.example.com"}
	c := mustText(t, `Hi {{ name }}, shop at https://shop.example.com/sale and https://example.com/x.`,
		Variable{Name: "name", Type: TypeString, Example: "Ana"})
	r, err := c.Render("camp", 3, map[string]any{"name": "Ana"})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.TrackLinks(tr, "camp", 3); err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(r.Text, "https://t.example.com/c/")
	if len(parts) != 3 || parts[0] != "Hi Ana, shop at " || !strings.HasSuffix(parts[2], ".") {
		t.Fatalf("tracked text: %q", r.Text)
	}
	tok := strings.Fields(parts[1])[0]
	cl, err := codec.Parse(tok)
	if err != nil || cl.URL != "https://shop.example.com/sale" || cl.Index != 0 || cl.Contact != 3 || cl.Campaign != "camp" {
		t.Fatalf("first link: %+v, %v", cl, err)
	}

	wa := mustParse(t, waSource)
	r, err = wa.Render("camp", 3, map[string]any{"name": "Ana", "note": "see https://example.com/n"})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.TrackLinks(tr, "camp", 3); err != nil {
		t.Fatal(err)
	}
	if p := r.WhatsApp.Components[0].Parameters[1].Text; !strings.HasPrefix(p, "see https://t.example.com/c/") {
		t.Fatalf("body parameter: %q", p)
	}
}

func TestDateNames(t *testing.T) {
	c := mustText(t, `{{ ends | date: "%a %d %b %Y, %A %B %H:%M", timezone, locale }}`,
		Variable{Name: "ends", Type: TypeDate, Example: "2025-03-01T20:30:00Z"},
		Variable{Name: "timezone", Type: TypeString, Default: "UTC"},
		Variable{Name: "locale", Type: TypeString, Default: ""})
	for _, tc := range []struct{ locale, zone, want string }{
		{"pt_BR", "America/Sao_Paulo", "sáb 01 mar 2025, sábado março 17:30"},
		{"id-ID", "Asia/Jakarta", "Min 02 Mar 2025, Minggu Maret 03:30"},
		{"de", "Europe/Berlin", "Sa 01 Mär 2025, Samstag März 21:30"},
		{"th_TH", "Asia/Bangkok", "อา. 02 มี.ค. 2025, วันอาทิตย์ มีนาคม 03:30"},
		{"en_US", "America/New_York", "Sat 01 Mar 2025, Saturday March 15:30"},
		{"", "", "Sat 01 Mar 2025, Saturday March 20:30"},
	} {
		r, err := c.Render("c", 1, map[string]any{"ends": "2025-03-01T20:30:00Z", "timezone": tc.zone, "locale": tc.locale})
		if err != nil || r.Text != tc.want {
			t.Errorf("%s: got %q, %v; want %q", tc.locale, r.Text, err, tc.want)
		}
	}
}
