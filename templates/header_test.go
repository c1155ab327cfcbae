package templates

import (
	"strings"
	"testing"
)

func TestWhatsAppHeaderErrors(t *testing.T) {
	base := "name: h\nchannel: whatsapp\nlocale: en_US\nkind: whatsapp_template\nwhatsapp:\n  name: h\n  category: UTILITY\n  header: "
	for _, tc := range []struct{ header, want string }{
		{`{type: image}`, "h.yaml:8: whatsapp.header.link: a media header has a link"},
		{`{type: image, link: "https://x.example/a.png", id: "123"}`, "not both"},
		{`{type: video, id: "abc"}`, `"abc" is not a media id`},
		{`{type: image, link: "http://x.example/a.png"}`, "a media link is an https URL"},
		{`{type: image, link: "https://x.example/a.png", filename: a.png}`, "filename: only for document headers"},
		{`{type: text}`, "whatsapp.header.text: required for a text header"},
		{`{type: text, text: hi, link: "https://x.example"}`, "whatsapp.header.link: only for media headers"},
		{`{type: audio}`, `unknown header type "audio"`},
		{`{type: text, text: "` + strings.Repeat("x", 61) + `"}`, "61 characters; WhatsApp allows 60"},
		{`{type: text, txt: hi}`, `unknown key "txt"`},
	} {
		_, err := ParseFile([]byte(base+tc.header+"\n"), "h.yaml")
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("header %s: got %v, want %q", tc.header, err, tc.want)
		}
	}
	c := mustParse(t, base+`{type: image, id: "1234567890"}`+"\n")
	r, err := c.Render("c", 1, nil)
	if err != nil || r.WhatsApp.Components[0].Type != "header" || r.WhatsApp.Components[0].Parameters[0].Image.ID != "1234567890" {
		t.Fatalf("image header by id: %+v, %v", r.WhatsApp, err)
	}
}
