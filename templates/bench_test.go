package templates

import (
	"os"
	"testing"
)

// BenchmarkRender measures renders per second and allocations, on the fast path and
// through osteele. Target: 500k renders/s/core (2 µs/op) for 3 variables and 1 filter.
func BenchmarkRender(b *testing.B) {
	text := mustText(b, `Hi {{ name | capitalize }}, {{ city }} has {{ deals }} new deals for you.`,
		Variable{Name: "name", Type: TypeString, Example: "ana"},
		Variable{Name: "city", Type: TypeString, Example: "Lisbon"},
		Variable{Name: "deals", Type: TypeNumber, Example: int64(3)})
	spring, err := os.ReadFile("testdata/golden/spring_sale.yaml")
	if err != nil {
		b.Fatal(err)
	}
	wa := mustParse(b, string(spring))
	constant := mustText(b, `Our store opens at 9 tomorrow.`)
	local := mustText(b, `{{ name | capitalize }}: {{ price | currency: "THB", locale }} until {{ ends | date: "%d/%m %H:%M", timezone }}`,
		Variable{Name: "name", Type: TypeString, Example: "ana"},
		Variable{Name: "price", Type: TypeNumber, Example: 1234.5},
		Variable{Name: "ends", Type: TypeDate, Example: "2025-03-01T10:00:00Z"},
		Variable{Name: "locale", Type: TypeString, Default: "th_TH"},
		Variable{Name: "timezone", Type: TypeString, Default: "Asia/Bangkok"})
	ab := mustParse(b, abSource)
	numbers := mustText(b, `{{ price | times: 0.97 | round: 2 }} for {{ deals | divided_by: 3 }} days, {{ price | plus: deals | at_least: 10 }}`,
		Variable{Name: "price", Type: TypeNumber, Example: 1234.5},
		Variable{Name: "deals", Type: TypeNumber, Example: int64(3)})

	for _, bc := range []struct {
		name string
		c    *Compiled
		vars map[string]any
	}{
		{"text_3vars_1filter", text, map[string]any{"name": "ana", "city": "Lisbon", "deals": 3}},
		{"whatsapp_template", wa, map[string]any{"name": "Ana", "discount": "30%", "coupon": "SPRING-1"}},
		{"variants", ab, map[string]any{"name": "Bo"}},
		{"constant", constant, nil},
		{"numbers", numbers, map[string]any{"price": 1234.5, "deals": 7}},
		{"locale_filters", local, map[string]any{"name": "ana", "price": 1234.5, "ends": "2025-03-01T10:00:00Z", "locale": "th_TH", "timezone": "Asia/Bangkok"}},
	} {
		// path=osteele renders every field through osteele: the baseline the fast path
		// is compared with, in the same run (benchstat -col /path).
		slow := *bc.c
		slow.slowOnly = true
		for _, p := range []struct {
			name string
			c    *Compiled
		}{{"fast", bc.c}, {"osteele", &slow}} {
			b.Run(bc.name+"/path="+p.name, func(b *testing.B) {
				b.ReportAllocs()
				var contact uint32
				for b.Loop() {
					contact++
					if _, err := p.c.Render("bench", contact, bc.vars); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
