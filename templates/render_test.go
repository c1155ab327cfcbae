package templates

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
)

const abSource = `
name: ab
channel: whatsapp
locale: en_US
kind: text
variants:
  - {name: a, weight: 50, body: "A {{ name }}"}
  - {name: b, weight: 30, body: "B {{ name }}"}
  - {name: c, weight: 20, body: "C {{ name }}"}
  - {name: off, weight: 0, body: "never"}
variables:
  name: {type: string, default: "you"}
`

func mustParse(t testing.TB, src string) *Compiled {
	t.Helper()
	tpl, err := ParseFile([]byte(src), "test.yaml")
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	c, err := Compile(tpl)
	if err != nil {
		t.Fatalf("compile: %v", err)
	}
	return c
}

func TestVariantDeterministic(t *testing.T) {
	c1, c2 := mustParse(t, abSource), mustParse(t, abSource)
	for contact := uint32(1); contact <= 500; contact++ {
		r, err := c1.Render("spring", contact, nil)
		if err != nil {
			t.Fatal(err)
		}
		again, _ := c1.Render("spring", contact, map[string]any{"name": "other vars"})
		if v := c2.Variant("spring", contact); v != r.Variant || again.Variant != r.Variant {
			t.Fatalf("contact %d: variant %s, then %s and %s", contact, r.Variant, again.Variant, v)
		}
		if !strings.HasPrefix(r.Text, strings.ToUpper(r.Variant)+" ") {
			t.Fatalf("contact %d: variant %s rendered %q", contact, r.Variant, r.Text)
		}
	}
	if r, err := c1.RenderVariant("off", nil); err != nil || r.Text != "never" {
		t.Fatalf("RenderVariant off: %q, %v", r.Text, err)
	}
	if _, err := c1.RenderVariant("nope", nil); err == nil {
		t.Fatal("RenderVariant of an unknown variant succeeded")
	}
	// The hash is a contract with audits and analytics: it must never change.
	if h := variantHash("spring", 42); h != 0x098c50095de4a527 {
		t.Fatalf("variantHash changed: %#x", h)
	}
}

func TestVariantWeights(t *testing.T) {
	c := mustParse(t, abSource)
	const n = 10_000
	count := map[string]int{}
	parity := map[string][2]int{}
	same := 0
	for contact := uint32(1); contact <= n; contact++ {
		v := c.Variant("spring", contact)
		count[v]++
		p := parity[v]
		p[contact%2]++
		parity[v] = p
		if c.Variant("autumn", contact) == v {
			same++
		}
	}
	for name, want := range map[string]float64{"a": 0.5, "b": 0.3, "c": 0.2, "off": 0} {
		got := float64(count[name]) / n
		if got < want-0.02 || got > want+0.02 {
			t.Errorf("variant %s: %.3f of contacts, want %.2f ± 0.02", name, got, want)
		}
		// even and odd ids get the same split: the hash does not follow the last digit
		if p := parity[name]; want > 0 && (float64(p[0])/(n/2) < want-0.03 || float64(p[1])/(n/2) < want-0.03) {
			t.Errorf("variant %s: even %d, odd %d of %d each", name, p[0], p[1], n/2)
		}
	}
	// Another campaign splits the same contacts independently: 0.5²+0.3²+0.2² = 0.38 agree.
	if f := float64(same) / n; f < 0.34 || f > 0.42 {
		t.Errorf("campaigns agree on %.3f of contacts, want about 0.38", f)
	}
}

const waSource = `
name: wa
channel: whatsapp
locale: en_US
kind: whatsapp_template
whatsapp:
  name: wa_promo
  category: MARKETING
  body: ["{{ name | default: 'there' }}", "{{ note }}"]
  buttons:
    - {index: 1, sub_type: quick_reply, payload: "stop:{{ campaign_tag }}"}
preview: "Hi {{1}}! {{2}}"
variables:
  name: {}
  note: {default: "Spring sale"}
  campaign_tag: {default: "x"}
`

func TestWhatsAppRender(t *testing.T) {
	c := mustParse(t, waSource)
	r, err := c.Render("c", 1, map[string]any{"name": "Ana"})
	if err != nil {
		t.Fatal(err)
	}
	got, _ := json.Marshal(r.WhatsApp)
	want := `{"name":"wa_promo","language":{"code":"en_US"},"components":[` +
		`{"type":"body","parameters":[{"type":"text","text":"Ana"},{"type":"text","text":"Spring sale"}]},` +
		`{"type":"button","sub_type":"quick_reply","index":1,"parameters":[{"type":"payload","payload":"stop:x"}]}]}`
	if string(got) != want {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
	if r.FreeForm || r.Kind != KindWhatsAppTemplate || r.Category != CategoryMarketing || r.Variant != "default" {
		t.Fatalf("got %+v", r)
	}

	for _, tc := range []struct {
		vars  map[string]any
		want  error
		field string
		msg   string
	}{
		{map[string]any{"note": " "}, ErrEmpty, "whatsapp.body.2", "renders empty (variables: note): WhatsApp rejects empty parameters (131008)"},
		{map[string]any{"note": "line\nbreak"}, ErrParamFormat, "whatsapp.body.2", "newlines"},
		{map[string]any{"note": "a     b"}, ErrParamFormat, "whatsapp.body.2", "more than 4 spaces"},
		{map[string]any{"note": strings.Repeat("n", MaxParamText+1)}, ErrTooLong, "whatsapp.body.2", "1025 characters; WhatsApp allows 1024"},
		{map[string]any{"campaign_tag": strings.Repeat("é", MaxParamText)}, ErrTooLong, "whatsapp.buttons[0].payload", ""},
	} {
		_, err := c.Render("c", 1, tc.vars)
		var re *RenderError
		if !errors.Is(err, tc.want) || !errors.As(err, &re) || re.Field != tc.field || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("vars %.40v: got %v, want %v on %s containing %q", tc.vars, err, tc.want, tc.field, tc.msg)
		}
	}
}

func TestHandBuiltWhatsApp(t *testing.T) {
	tpl := &Template{
		Name: "hand", Channel: ChannelWhatsApp, Locale: "en_US", Kind: KindWhatsAppTemplate,
		Variables: []Variable{{Name: "name", Type: TypeString, Required: true}},
		Variants: []Variant{
			{Name: "a", Weight: 1, WhatsApp: &WhatsApp{Name: "hand_a", Category: CategoryUtility,
				Params: []Param{{Name: "first_name", Text: "{{ name }}"}}}},
			{Name: "b", Weight: 1, WhatsApp: &WhatsApp{Name: "hand_b", Language: "en_GB", Category: CategoryUtility,
				Buttons: []Button{{Index: 0, SubType: ButtonURL, Text: "{{ name | url_encode }}"}}}},
		},
	}
	c, err := Compile(tpl)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]string{}
	for contact := uint32(0); contact < 20; contact++ {
		r, err := c.Render("hand", contact, map[string]any{"name": "Jo Jo"})
		if err != nil {
			t.Fatal(err)
		}
		b, _ := json.Marshal(r.WhatsApp)
		seen[r.Variant] = string(b)
	}
	want := map[string]string{
		"a": `{"name":"hand_a","language":{"code":"en_US"},"components":[{"type":"body","parameters":[{"type":"text","parameter_name":"first_name","text":"Jo Jo"}]}]}`,
		"b": `{"name":"hand_b","language":{"code":"en_GB"},"components":[{"type":"button","sub_type":"url","index":0,"parameters":[{"type":"text","text":"Jo+Jo"}]}]}`,
	}
	for k, v := range want {
		if seen[k] != v {
			t.Errorf("variant %s: got %s, want %s", k, seen[k], v)
		}
	}

	// hand-built mistakes get the same errors as files, without lines
	bad := *tpl
	bad.Variants = []Variant{{Name: "a", Weight: 1, WhatsApp: &WhatsApp{Name: "Bad Name", Category: "PROMO",
		Params: []Param{{Name: "x", Text: "{{ nope }}"}, {Text: "{{ name }}"}}}}}
	_, err = Compile(&bad)
	for _, want := range []string{
		`whatsapp.name: "Bad Name" is not a WhatsApp template name`,
		`whatsapp.category: unknown category "PROMO"`,
		`whatsapp.body.x: unknown variable "nope"`,
		`whatsapp.body.2: mixes named and positional parameters`,
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("got %v, want it to contain %q", err, want)
		}
	}
}

func TestRenderConcurrent(t *testing.T) {
	c := mustParse(t, abSource)
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 300 {
				contact := uint32(g*1000 + i)
				name := fmt.Sprint("n", contact)
				r, err := c.Render("cc", contact, map[string]any{"name": name})
				if err != nil || !strings.HasSuffix(r.Text, " "+name) {
					errs <- fmt.Errorf("contact %d: %q, %v", contact, r.Text, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}
