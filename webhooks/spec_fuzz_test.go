package webhooks

import (
	"net/url"
	"strings"
	"testing"

	"github.com/herald-dev/herald/internal/events"
)

// Whatever a client sends as a subscription, Validate does not panic, and what it
// accepts is an absolute http(s) URL with a host and no credentials, and known kinds.
func FuzzSpecValidate(f *testing.F) {
	for _, s := range []string{"https://crm.example.com/in", "http://127.0.0.1:8080/h?x=1", "ftp://x", "//x", "https://u:p@x/",
		"https://[::1]:443/", "https://x:0/", "javascript:alert(1)", "https://x/#f", " https://x/", "http://%zz/"} {
		f.Add(s, "sent,delivered", "7")
	}
	f.Fuzz(func(t *testing.T, u, kinds, campaigns string) {
		spec := Spec{URL: u}
		for _, k := range strings.Split(kinds, ",") {
			spec.Kinds = append(spec.Kinds, events.Kind(k))
		}
		if campaigns != "" {
			spec.Campaigns = strings.Split(campaigns, ",")
		}
		if spec.Validate() != nil {
			return
		}
		p, err := url.Parse(u)
		if err != nil || (p.Scheme != "http" && p.Scheme != "https") || p.Hostname() == "" || p.User != nil {
			t.Fatalf("accepted %q", u)
		}
		for _, k := range spec.Kinds {
			if !k.Valid() || k == events.Queued || k == events.Skipped {
				t.Fatalf("accepted kind %q", k)
			}
		}
	})
}
