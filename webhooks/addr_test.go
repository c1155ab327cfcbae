package webhooks

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/herald-dev/herald/internal/events"
	"github.com/herald-dev/herald/internal/testenv"
)

// Without HERALD_WEBHOOKS_ALLOW_PRIVATE, a subscription to a private, loopback or
// link-local address is refused when it is made, and a delivery is refused when the
// address dialled is one (a name that resolved elsewhere at subscribe time: DNS
// rebinding); with it, both are allowed.
func TestPrivateTargetsRefused(t *testing.T) {
	rdb, prefix := testenv.Redis(t)
	st := NewStore(rdb, prefix)
	ctx := context.Background()
	t.Setenv(AllowPrivateEnv, "false")
	for _, u := range []string{"http://127.0.0.1:9/x", "http://10.1.2.3/", "https://192.168.0.10/h", "http://169.254.169.254/latest/meta-data",
		"http://[::1]:8080/", "http://[fe80::1]/", "http://[::ffff:127.0.0.1]/", "http://0.0.0.0/", "http://100.64.0.1/", "http://localhost:8080/"} {
		_, err := st.Create(ctx, Spec{URL: u, Kinds: []events.Kind{events.Sent}})
		var fe *FieldError
		if !errors.As(err, &fe) || fe.Field != "url" || !strings.Contains(fe.Reason, AllowPrivateEnv) {
			t.Errorf("%s: %v, want a refusal of the url", u, err)
		}
	}
	if subs, err := st.List(ctx); err != nil || len(subs) != 0 {
		t.Fatalf("refused subscriptions stored: %+v %v", subs, err)
	}
	if _, err := st.Create(ctx, Spec{URL: "https://93.184.216.34/hook", Kinds: []events.Kind{events.Sent}}); err != nil {
		t.Fatalf("a public address: %v", err)
	}

	// At delivery: the dialled address is checked, whatever the name resolved to before.
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hits.Add(1) }))
	defer srv.Close()
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		DialContext: (&net.Dialer{Control: DialControl}).DialContext}}
	url := strings.Replace(srv.URL, "127.0.0.1", "localhost", 1)
	if _, err := client.Post(url, "application/json", nil); err == nil || !errors.Is(err, ErrPrivateAddress) {
		t.Fatalf("a delivery to %s: %v, want ErrPrivateAddress", url, err)
	}
	if hits.Load() != 0 {
		t.Fatal("the receiver was reached")
	}
	t.Setenv(AllowPrivateEnv, "true")
	res, err := client.Post(url, "application/json", nil)
	if err != nil || hits.Load() != 1 {
		t.Fatalf("allowed: %v, %d hits", err, hits.Load())
	}
	res.Body.Close()
	if _, err := st.Create(ctx, Spec{URL: srv.URL, Kinds: []events.Kind{events.Sent}}); err != nil {
		t.Fatalf("allowed subscription: %v", err)
	}
}

func TestPublicAddr(t *testing.T) {
	for s, want := range map[string]bool{"8.8.8.8": true, "2606:4700::1111": true, "127.0.0.1": false, "10.0.0.1": false, "172.16.5.4": false,
		"192.168.1.1": false, "169.254.169.254": false, "::1": false, "fc00::1": false, "fe80::1": false, "::": false, "224.0.0.1": false,
		"100.64.1.1": false, "::ffff:10.0.0.1": false, "198.18.0.1": false, "2001:db8::1": false} {
		if got := PublicAddr(netip.MustParseAddr(s)); got != want {
			t.Errorf("%s: public %v, want %v", s, got, want)
		}
	}
}

// DialControl takes any address string: it never panics, and it lets through only a
// parseable address that is public.
func FuzzDialControl(f *testing.F) {
	for _, s := range []string{"8.8.8.8:443", "127.0.0.1:80", "[::1]:8080", "[::ffff:10.0.0.1]:1", "169.254.169.254:80", "", ":80",
		"example.com:443", "[fe80::1%eth0]:80", "1.2.3.4", "[2606:4700::1111]:443"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, address string) {
		t.Setenv(AllowPrivateEnv, "false")
		err := DialControl("tcp", address, nil)
		if err == nil {
			ap, perr := netip.ParseAddrPort(address)
			if perr != nil || !PublicAddr(ap.Addr()) {
				t.Fatalf("%q let through", address)
			}
		} else if !errors.Is(err, ErrPrivateAddress) {
			t.Fatalf("%q: %v", address, err)
		}
	})
}
