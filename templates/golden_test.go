package templates

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/herald-dev/herald/internal/testenv"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

func TestMain(m *testing.M) { testenv.Main(m) }

// checkGolden compares got with the golden file, or rewrites it with -update.
func checkGolden(t *testing.T, path string, got []byte) {
	t.Helper()
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./templates/ -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs (go test ./templates/ -update rewrites it)\n--- got\n%s\n--- want\n%s", path, got, want)
	}
}

type goldenInput struct {
	Campaign string         `json:"campaign"`
	Contact  uint32         `json:"contact"`
	Vars     map[string]any `json:"vars"`
}

// TestGoldenRender renders testdata/golden/NAME.yaml for every input of
// NAME.input.json and compares with NAME.golden: the variant, then the text (kind text)
// or the exact Cloud API template object (kind whatsapp_template), or the error.
func TestGoldenRender(t *testing.T) {
	files, err := filepath.Glob("testdata/golden/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no golden templates: %v", err)
	}
	for _, file := range files {
		base := strings.TrimSuffix(file, ".yaml")
		t.Run(filepath.Base(base), func(t *testing.T) {
			src, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			tpl, err := ParseFile(src, filepath.Base(file))
			if err != nil {
				t.Fatalf("parse: %v", err)
			}
			c, err := Compile(tpl)
			if err != nil {
				t.Fatalf("compile: %v", err)
			}
			raw, err := os.ReadFile(base + ".input.json")
			if err != nil {
				t.Fatal(err)
			}
			dec := json.NewDecoder(bytes.NewReader(raw))
			dec.UseNumber()
			var inputs []goldenInput
			if err := dec.Decode(&inputs); err != nil {
				t.Fatalf("%s.input.json: %v", base, err)
			}
			var out bytes.Buffer
			for _, in := range inputs {
				vars, _ := json.Marshal(in.Vars)
				fmt.Fprintf(&out, "=== campaign=%s contact=%d vars=%s\n", in.Campaign, in.Contact, vars)
				r, err := c.Render(in.Campaign, in.Contact, plainNumbers(in.Vars))
				if err != nil {
					fmt.Fprintf(&out, "error: %v\n\n", err)
					continue
				}
				fmt.Fprintf(&out, "variant: %s\n", r.Variant)
				if r.Kind == KindText && r.Channel == ChannelSMS {
					fmt.Fprintf(&out, "sms (%d %s segments):\n%s\n\n", r.SMSSegments, r.SMSEncoding, r.Text)
					continue
				}
				if r.Kind == KindText {
					fmt.Fprintf(&out, "text (free-form: %v):\n%s\n\n", r.FreeForm, r.Text)
					continue
				}
				if r.Email != nil {
					fmt.Fprintf(&out, "subject: %s\n--- text\n%s\n--- html\n%s\n\n", r.Email.Subject, r.Email.Text, r.Email.HTML)
					continue
				}
				js, err := json.MarshalIndent(r.WhatsApp, "", "  ")
				if err != nil {
					t.Fatal(err)
				}
				fmt.Fprintf(&out, "template (category %s):\n%s\n\n", r.Category, js)
			}
			checkGolden(t, base+".golden", out.Bytes())
		})
	}
}

// plainNumbers turns json.Numbers into int64 or float64, as a caller would pass them.
func plainNumbers(vars map[string]any) map[string]any {
	out := make(map[string]any, len(vars))
	for k, v := range vars {
		if n, ok := v.(json.Number); ok {
			if i, err := n.Int64(); err == nil {
				v = i
			} else if f, err := n.Float64(); err == nil {
				v = f
			}
		}
		out[k] = v
	}
	return out
}

// TestGoldenErrors parses every testdata/errors/*.yaml, which must fail, and compares
// the error text (file:line: field: message, one per line) with NAME.err.
func TestGoldenErrors(t *testing.T) {
	files, err := filepath.Glob("testdata/errors/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no error cases: %v", err)
	}
	for _, file := range files {
		base := strings.TrimSuffix(file, ".yaml")
		t.Run(filepath.Base(base), func(t *testing.T) {
			src, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			_, err = ParseFile(src, filepath.Base(file))
			if err == nil {
				t.Fatalf("%s parsed without error", file)
			}
			checkGolden(t, base+".err", []byte(err.Error()+"\n"))
		})
	}
}
