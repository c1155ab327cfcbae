package line

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"unicode/utf8"

	"github.com/herald-dev/herald/templates"
)

// Limits of LINE message objects Herald builds.
const (
	maxButtonsText  = 160  // buttons template text without a title or an image
	maxButtons      = 4    // actions of a buttons template
	maxFlexButtons  = 4    // footer buttons Herald puts in a bubble
	maxLabel        = 20   // characters of an action's label
	maxURI          = 1000 // characters of a uri action
	maxTemplateAlt  = 400  // altText of a template message
	maxFlexAlt      = 1500 // altText of a flex message
	maxFlexBodyText = 2000 // Herald keeps a bubble's text readable; longer text goes as a text message
)

var linkRe = regexp.MustCompile(`https?://[^\s<>"']+`)

// Messages maps a rendered Herald template to LINE message objects: text without links
// is a text message (at most 5,000 characters); text with links (Herald's tracked links
// among them) becomes a message with a button per link — a buttons template when the
// text fits one (160 characters, 4 links), else a flex bubble whose body is the text —
// so the links are tappable buttons, not bare URLs. A message LINE would refuse is
// refused here, before sending, as the 400 LINE would answer (an *APIError without a
// request id).
func Messages(r templates.Rendered) ([]json.RawMessage, error) {
	if r.Kind != "" && r.Kind != templates.KindText {
		return nil, refuse("a %s template is not a LINE message: use a text template", r.Kind)
	}
	text := r.Text
	n := utf8.RuneCountInString(text)
	switch {
	case strings.TrimSpace(text) == "":
		return nil, refuse("the message text is empty")
	case !utf8.ValidString(text):
		return nil, refuse("the message text is not valid UTF-8")
	case n > MaxTextChars:
		return nil, refuse("the message text has %d characters, more than the %d LINE allows", n, MaxTextChars)
	}
	links := uniqueLinks(text)
	var m any
	switch {
	case len(links) == 0 || len(links) > maxFlexButtons || n > maxFlexBodyText:
		m = map[string]any{"type": "text", "text": text}
	case n <= maxButtonsText && len(links) <= maxButtons:
		m = map[string]any{"type": "template", "altText": clip(text, maxTemplateAlt),
			"template": map[string]any{"type": "buttons", "text": text, "actions": actions(links)}}
	default:
		buttons := make([]any, 0, len(links))
		for _, a := range actions(links) {
			buttons = append(buttons, map[string]any{"type": "button", "style": "link", "action": a})
		}
		m = map[string]any{"type": "flex", "altText": clip(text, maxFlexAlt), "contents": map[string]any{
			"type": "bubble",
			"body": map[string]any{"type": "box", "layout": "vertical", "contents": []any{
				map[string]any{"type": "text", "text": text, "wrap": true}}},
			"footer": map[string]any{"type": "box", "layout": "vertical", "contents": buttons},
		}}
	}
	b, err := json.Marshal(m)
	if err != nil {
		return nil, refuse("encode the message: %v", err)
	}
	return []json.RawMessage{b}, nil
}

func refuse(format string, args ...any) error {
	return &APIError{Status: http.StatusBadRequest, Message: fmt.Sprintf(format, args...) + " (refused before sending)"}
}

// uniqueLinks returns the links of text that a uri action can carry, first occurrence
// first; a text with a link no action can carry keeps all its links as text.
func uniqueLinks(text string) []string {
	var out []string
	seen := map[string]bool{}
	for _, l := range linkRe.FindAllString(text, -1) {
		l = strings.TrimRight(l, ".,;:!?)")
		if u, err := url.Parse(l); err != nil || u.Host == "" || len(l) > maxURI {
			return nil
		}
		if !seen[l] {
			seen[l] = true
			out = append(out, l)
		}
	}
	return out
}

// actions are the uri actions of links, labelled by their host ("Open example.com").
func actions(links []string) []any {
	out := make([]any, 0, len(links))
	for _, l := range links {
		u, _ := url.Parse(l)
		out = append(out, map[string]any{"type": "uri", "label": clip("Open "+strings.TrimPrefix(u.Hostname(), "www."), maxLabel), "uri": l})
	}
	return out
}

// clip cuts s to at most n characters, ending in "…" when cut.
func clip(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n-1]) + "…"
}
