package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/herald-dev/herald/internal/app"
	"github.com/herald-dev/herald/internal/testenv"
	"github.com/herald-dev/herald/segments"
)

const cliTemplate = `name: promo
channel: whatsapp
locale: en_US
kind: whatsapp_template
whatsapp:
  name: promo_v1
  category: MARKETING
  body:
    first_name: "{{ name | default: 'there' }}"
    coupon: "{{ coupon }}"
preview: "Hi {{first_name}}, use {{coupon}}"
variables:
  name: {type: string}
  coupon: {type: string, example: SPRING}
`

func writeFile(t *testing.T, name, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestTemplatesValidateShowPreview(t *testing.T) {
	// validate without Redis: a bad file exits 2 with file:line errors
	bad := writeFile(t, "bad.yaml", strings.Replace(cliTemplate, "{{ coupon }}", "{{ copon }}", 1))
	code, _, errOut := run("templates", "validate", bad)
	if code != 2 || !strings.Contains(errOut, "bad.yaml:10: whatsapp.body.coupon: unknown variable \"copon\"") {
		t.Fatalf("validate bad: exit %d, %s", code, errOut)
	}
	code, out, _ := run("--output", "json", "templates", "validate", bad)
	var rep app.TemplateValidation
	if code != 2 || json.Unmarshal([]byte(out), &rep) != nil || rep.Valid || len(rep.Errors) != 1 || rep.Errors[0].Line != 10 {
		t.Fatalf("validate bad --output json: exit %d, %s", code, out)
	}
	good := writeFile(t, "promo.yaml", cliTemplate)
	if code, out, errOut := run("templates", "validate", good); code != 0 || !strings.Contains(out, "is valid") {
		t.Fatalf("validate good: exit %d, %s%s", code, out, errOut)
	}

	rdb, prefix := testenv.Redis(t)
	ctx := context.Background()
	if _, err := segments.NewStore(rdb, prefix).Upsert(ctx, []segments.Contact{
		{Phone: "+66812345678", Name: "Ana", Tags: []string{"vip"}, Attrs: map[string]string{"coupon": "ANA10"}},
		{Phone: "+66812345679", Name: "Bo", Tags: []string{"vip"}},
		{Phone: "+66812345670", Tags: []string{"other"}, Attrs: map[string]string{"coupon": "X1"}},
	}); err != nil {
		t.Fatal(err)
	}
	g := []string{"--redis-url", "redis://" + testenv.RedisAddr(t) + "/0", "--redis-prefix", prefix}
	cmd := func(args ...string) (int, string, string) { return run(append(append([]string{}, g...), args...)...) }

	// --segment: one of the two vip contacts has no coupon, and coupon has no default
	code, _, errOut = cmd("templates", "validate", good, "--segment", "vip")
	if code != 2 || !strings.Contains(errOut, `promo.yaml:14: variables.coupon: 1 of 2 contacts have no "coupon"`) ||
		!strings.Contains(errOut, "whatsapp.body.coupon (line 10)") {
		t.Fatalf("validate --segment vip: exit %d, %s", code, errOut)
	}
	if code, out, errOut := cmd("templates", "validate", good, "--segment", "other"); code != 0 || !strings.Contains(out, "all 1 sampled contacts") {
		t.Fatalf("validate --segment other: exit %d, %s%s", code, out, errOut)
	}
	if code, _, errOut := cmd("templates", "validate", good, "--segment", "vip and ("); code != 2 {
		t.Fatalf("validate with a bad segment: exit %d, %s", code, errOut)
	}

	if code, out, errOut := cmd("templates", "add", good); code != 0 || !strings.Contains(out, "version 1") {
		t.Fatalf("add: exit %d, %s%s", code, out, errOut)
	}
	code, out, errOut = cmd("templates", "show", "promo")
	if code != 0 || !strings.Contains(out, "versions: 1") || !strings.Contains(out, "name: promo_v1") {
		t.Fatalf("show: exit %d, %s%s", code, out, errOut)
	}
	if code, _, errOut := cmd("templates", "show", "promo", "--version", "2"); code != 2 || !strings.Contains(errOut, "not found") {
		t.Fatalf("show --version 2: exit %d, %s", code, errOut)
	}

	code, out, errOut = cmd("--output", "json", "templates", "preview", "promo", "--contact", "+66812345678", "--campaign", "c1")
	var pv struct {
		Request json.RawMessage `json:"request"`
	}
	if code != 0 || json.Unmarshal([]byte(out), &pv) != nil {
		t.Fatalf("preview: exit %d, %s%s", code, out, errOut)
	}
	want := `{"messaging_product":"whatsapp","recipient_type":"individual","to":"+66812345678","type":"template",` +
		`"template":{"name":"promo_v1","language":{"code":"en_US"},"components":[{"type":"body","parameters":[` +
		`{"type":"text","parameter_name":"first_name","text":"Ana"},{"type":"text","parameter_name":"coupon","text":"ANA10"}]}]},` +
		`"biz_opaque_callback_data":"c1:1"}`
	var compact bytes.Buffer
	if err := json.Compact(&compact, pv.Request); err != nil {
		t.Fatal(err)
	}
	if compact.String() != want {
		t.Fatalf("preview request:\ngot  %s\nwant %s", compact.String(), want)
	}
	// Bo has no coupon: the empty parameter is refused, naming the field
	if code, _, errOut := cmd("templates", "preview", "promo", "--contact", "+66812345679"); code != 1 || !strings.Contains(errOut, "whatsapp.body.coupon") {
		t.Fatalf("preview without coupon: exit %d, %s", code, errOut)
	}
	if code, _, errOut := cmd("templates", "preview", "promo", "--contact", "+66899999999"); code != 2 || !strings.Contains(errOut, "not found") {
		t.Fatalf("preview of an unknown phone: exit %d, %s", code, errOut)
	}
}
