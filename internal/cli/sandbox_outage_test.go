package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/herald-dev/herald/channels/whatsapp/sandbox"
)

// herald sandbox --outage-for plans an outage from start: GET /_sandbox/outage shows it
// active and a send is refused with Meta's outage error. Bad --outage-* values exit 2.
func TestSandboxOutageFlags(t *testing.T) {
	for _, args := range [][]string{
		{"sandbox", "--outage-mode", "down"},
		{"sandbox", "--outage-for", "1m", "--outage-code", "130429"},
		{"sandbox", "--outage-at", "-5s"},
	} {
		if code, _, errOut := run(args...); code != 2 {
			t.Errorf("herald %s: exit %d, want 2 (%s)", strings.Join(args, " "), code, errOut)
		}
	}

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	var out, errb bytes.Buffer
	go func() {
		done <- Run(ctx, []string{"herald", "sandbox", "--listen", addr, "--outage-for", "1h", "--outage-mode", "refuse"}, strings.NewReader(""), &out, &errb)
	}()
	var o sandbox.Outage
	deadline := time.Now().Add(20 * time.Second)
	for {
		res, err := http.Get("http://" + addr + "/_sandbox/outage")
		if err == nil {
			err = json.NewDecoder(res.Body).Decode(&o)
			res.Body.Close()
			if err == nil {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the sandbox did not answer: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if !o.Active || o.Mode != sandbox.OutageRefuse || o.Code != 2 {
		t.Errorf("outage %+v: want an active refusal with code 2", o)
	}
	req, _ := http.NewRequest(http.MethodPost, "http://"+addr+"/v21.0/106540352242922/messages",
		strings.NewReader(`{"messaging_product":"whatsapp","to":"+16505551234","type":"text","text":{"body":"hi"}}`))
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var body struct {
		Error struct {
			Code int `json:"code"`
		} `json:"error"`
	}
	_ = json.NewDecoder(res.Body).Decode(&body)
	res.Body.Close()
	if res.StatusCode != http.StatusServiceUnavailable || body.Error.Code != 2 {
		t.Errorf("a send during the outage: %d, code %d; want 503 and code 2", res.StatusCode, body.Error.Code)
	}
	cancel()
	if code := <-done; code != 0 {
		t.Errorf("herald sandbox exited %d after cancel\n%s%s", code, out.String(), errb.String())
	}
}
