package graph

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

const acceptedBody = `{"messaging_product":"whatsapp","contacts":[{"input":"+16505551234","wa_id":"16505551234"}],
 "messages":[{"id":"wamid.HBgLMTY1MDU1NTEyMzQVAgARGBI5QTNDQTVCM0Q0Q0Q2RTY3RTcA","message_status":"accepted"}]}`

// server starts an httptest server with h and counts new connections.
func server(t testing.TB, h http.HandlerFunc) (*Client, *atomic.Int64) {
	t.Helper()
	var conns atomic.Int64
	srv := httptest.NewUnstartedServer(h)
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	return NewClient(ClientConfig{BaseURL: srv.URL + "/", HTTPClient: srv.Client()}), &conns
}

func templateRequest() SendRequest {
	return SendRequest{
		To:   "+16505551234",
		Type: "template",
		Template: &Template{
			Name:     "order_confirmation",
			Language: Language{Code: "en_US"},
			Components: []Component{{Type: "body", Parameters: []Parameter{
				{Type: "text", ParameterName: "first_name", Text: "Jessica"},
				{Type: "text", ParameterName: "order_number", Text: "SKBUP2-4CPIG9"},
			}}},
		},
		BizOpaqueCallbackData: "42:9",
	}
}

func TestSendSuccess(t *testing.T) {
	var got struct {
		method, path, auth, ctype string
		body                      map[string]any
	}
	c, _ := server(t, func(w http.ResponseWriter, r *http.Request) {
		got.method, got.path = r.Method, r.URL.Path
		got.auth, got.ctype = r.Header.Get("Authorization"), r.Header.Get("Content-Type")
		if err := json.NewDecoder(r.Body).Decode(&got.body); err != nil {
			t.Errorf("decode request: %v", err)
		}
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, acceptedBody)
	})
	res, err := c.Send(context.Background(), "106540352242922", "EAAG-token", templateRequest())
	if err != nil {
		t.Fatal(err)
	}
	want := SendResult{MessageID: "wamid.HBgLMTY1MDU1NTEyMzQVAgARGBI5QTNDQTVCM0Q0Q0Q2RTY3RTcA", WaID: "16505551234", Status: "accepted"}
	if res != want {
		t.Errorf("result %+v, want %+v", res, want)
	}
	if got.method != http.MethodPost || got.path != "/v21.0/106540352242922/messages" {
		t.Errorf("request %s %s", got.method, got.path)
	}
	if got.auth != "Bearer EAAG-token" || got.ctype != "application/json" {
		t.Errorf("headers: auth %q content-type %q", got.auth, got.ctype)
	}
	// The body is exactly the Cloud API's documented template request, plus the callback data.
	var wantBody map[string]any
	if err := json.Unmarshal([]byte(`{"messaging_product":"whatsapp","recipient_type":"individual","to":"+16505551234","type":"template",
 "template":{"name":"order_confirmation","language":{"code":"en_US"},
  "components":[{"type":"body","parameters":[
   {"type":"text","parameter_name":"first_name","text":"Jessica"},
   {"type":"text","parameter_name":"order_number","text":"SKBUP2-4CPIG9"}]}]},
 "biz_opaque_callback_data":"42:9"}`), &wantBody); err != nil {
		t.Fatal(err)
	}
	gb, _ := json.Marshal(got.body)
	wb, _ := json.Marshal(wantBody)
	if string(gb) != string(wb) {
		t.Errorf("body\n got %s\nwant %s", gb, wb)
	}
}

func TestSendTextBody(t *testing.T) {
	var body string
	c, _ := server(t, func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		body = string(b)
		io.WriteString(w, acceptedBody)
	})
	req := SendRequest{MessagingProduct: "whatsapp", RecipientType: "individual", To: "+16505551234", Type: "text",
		Text: &Text{PreviewURL: true, Body: "Hi <there> & welcome"}}
	if _, err := c.Send(context.Background(), "1", "t", req); err != nil {
		t.Fatal(err)
	}
	var back SendRequest
	if err := json.Unmarshal([]byte(body), &back); err != nil {
		t.Fatal(err)
	}
	if back.Text == nil || back.Text.Body != req.Text.Body || !back.Text.PreviewURL || back.Template != nil {
		t.Errorf("body %s", body)
	}
	for _, key := range []string{`"type":"text"`, `"preview_url":true`, `"recipient_type":"individual"`} {
		if !strings.Contains(body, key) {
			t.Errorf("body %s lacks %s", body, key)
		}
	}
}

func TestSendAPIErrors(t *testing.T) {
	cases := []struct {
		name   string
		status int
		body   string
		want   APIError
		action Action
	}{
		{"throughput", 400, `{"error":{"message":"(#130429) Rate limit hit","type":"OAuthException","code":130429,
 "error_data":{"messaging_product":"whatsapp","details":"Cloud API message throughput has been reached."},
 "fbtrace_id":"Az8or2yhqkZfEZ-_4Qn_Bam"}}`,
			APIError{HTTPStatus: 400, Code: 130429, Type: "OAuthException", Message: "(#130429) Rate limit hit",
				Details: "Cloud API message throughput has been reached.", FBTraceID: "Az8or2yhqkZfEZ-_4Qn_Bam"}, ActionRetry},
		{"expired token with subcode", 401, `{"error":{"message":"Error validating access token: Session has expired","type":"OAuthException","code":190,"error_subcode":463,"fbtrace_id":"A1"}}`,
			APIError{HTTPStatus: 401, Code: 190, Subcode: 463, Type: "OAuthException", Message: "Error validating access token: Session has expired", FBTraceID: "A1"}, ActionPauseAccount},
		{"template missing", 404, `{"error":{"message":"(#132001) Template name does not exist in the translation","type":"OAuthException","code":132001,"error_data":{"messaging_product":"whatsapp","details":"template name (promo) does not exist in en_US"},"fbtrace_id":"A2"}}`,
			APIError{HTTPStatus: 404, Code: 132001, Type: "OAuthException", Message: "(#132001) Template name does not exist in the translation", Details: "template name (promo) does not exist in en_US", FBTraceID: "A2"}, ActionPauseCampaign},
		{"graph error on a 500 is still a graph error", 500, `{"error":{"message":"(#131000) Something went wrong","type":"OAuthException","code":131000,"fbtrace_id":"A3"}}`,
			APIError{HTTPStatus: 500, Code: 131000, Type: "OAuthException", Message: "(#131000) Something went wrong", FBTraceID: "A3"}, ActionRetry},
		{"code 0 is a real code", 400, `{"error":{"message":"(#0) AuthException","type":"OAuthException","code":0}}`,
			APIError{HTTPStatus: 400, Code: 0, Type: "OAuthException", Message: "(#0) AuthException"}, ActionPauseAccount},
		{"error on a 200", 200, `{"error":{"message":"(#131047) Re-engagement message","type":"OAuthException","code":131047,"error_data":{"details":"more than 24 hours"}}}`,
			APIError{HTTPStatus: 200, Code: 131047, Type: "OAuthException", Message: "(#131047) Re-engagement message", Details: "more than 24 hours"}, ActionConvertToTemplate},
		{"unknown fields", 400, `{"error":{"message":"m","type":"OAuthException","code":131051,"is_transient":false,"error_user_msg":"u"}}`,
			APIError{HTTPStatus: 400, Code: 131051, Type: "OAuthException", Message: "m"}, ActionFailJob},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cl, _ := server(t, func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(c.status)
				io.WriteString(w, c.body)
			})
			_, err := cl.Send(context.Background(), "1", "t", templateRequest())
			var ae *APIError
			if !errors.As(err, &ae) {
				t.Fatalf("error %T %v, want *APIError", err, err)
			}
			if *ae != c.want {
				t.Errorf("APIError %+v, want %+v", *ae, c.want)
			}
			if got := Classify(err).Action; got != c.action {
				t.Errorf("action %v, want %v", got, c.action)
			}
			if !strings.Contains(err.Error(), fmt.Sprint(c.want.Code)) {
				t.Errorf("message %q lacks the code", err)
			}
		})
	}
}

func TestSendTransportErrors(t *testing.T) {
	cases := []struct {
		name   string
		status int
		body   string
	}{
		{"5xx html", 502, "<html><body><h1>502 Bad Gateway</h1></body></html>"},
		{"503 empty", 503, ""},
		{"200 garbage", 200, "OK"},
		{"200 json without message", 200, `{"messaging_product":"whatsapp","contacts":[],"messages":[]}`},
		{"404 json without error", 404, `{"data":[]}`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cl, _ := server(t, func(w http.ResponseWriter, r *http.Request) {
				w.WriteHeader(c.status)
				io.WriteString(w, c.body)
			})
			_, err := cl.Send(context.Background(), "1", "t", templateRequest())
			var te *TransportError
			if !errors.As(err, &te) {
				t.Fatalf("error %T %v, want *TransportError", err, err)
			}
			if te.HTTPStatus != c.status || te.Body != c.body {
				t.Errorf("TransportError %+v", te)
			}
			if cl := Classify(err); cl.Action != ActionRetry || !cl.Retryable {
				t.Errorf("class %+v", cl)
			}
		})
	}
}

func TestSendConnectionRefused(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	c := NewClient(ClientConfig{BaseURL: "http://" + addr})
	_, err = c.Send(context.Background(), "1", "t", templateRequest())
	var te *TransportError
	if !errors.As(err, &te) || te.HTTPStatus != 0 || te.Err == nil {
		t.Fatalf("error %T %v, want *TransportError with a cause", err, err)
	}
	if !Classify(err).Retryable {
		t.Errorf("not retryable: %v", err)
	}
}

func TestSendContext(t *testing.T) {
	arrived := make(chan struct{}, 1)
	release := make(chan struct{})
	c, _ := server(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case arrived <- struct{}{}:
		default:
		}
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	t.Cleanup(func() { close(release) }) // runs before the server's Close

	t.Run("cancel", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		go func() {
			<-arrived
			cancel()
		}()
		_, err := c.Send(ctx, "1", "t", templateRequest())
		var te *TransportError
		if !errors.As(err, &te) || !errors.Is(err, context.Canceled) {
			t.Fatalf("error %T %v, want a TransportError wrapping context.Canceled", err, err)
		}
	})
	t.Run("deadline", func(t *testing.T) {
		// The server never answers, so the deadline always fires, however slow the machine.
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
		defer cancel()
		_, err := c.Send(ctx, "1", "t", templateRequest())
		if !errors.Is(err, context.DeadlineExceeded) || !Classify(err).Retryable {
			t.Fatalf("error %v, want a retryable deadline error", err)
		}
	})
	t.Run("already cancelled", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if _, err := c.Send(ctx, "1", "t", templateRequest()); !errors.Is(err, context.Canceled) {
			t.Fatalf("error %v", err)
		}
	})
}

func TestSendReusesConnections(t *testing.T) {
	var n atomic.Int64
	big := `{"error":{"message":"` + strings.Repeat("x", 100<<10) + `","type":"OAuthException","code":131000}}`
	c, conns := server(t, func(w http.ResponseWriter, r *http.Request) {
		switch n.Add(1) % 4 {
		case 0:
			io.WriteString(w, acceptedBody)
		case 1:
			w.WriteHeader(400)
			io.WriteString(w, `{"error":{"message":"(#130429) Rate limit hit","type":"OAuthException","code":130429}}`)
		case 2:
			w.WriteHeader(502)
			io.WriteString(w, "<html>bad gateway</html>")
		case 3:
			w.WriteHeader(500)
			io.WriteString(w, big) // larger than one read: must be drained
		}
	})
	for i := 0; i < 40; i++ {
		_, err := c.Send(context.Background(), "1", "t", templateRequest())
		if i%4 == 3 && err != nil {
			t.Fatalf("send %d: %v", i, err)
		}
	}
	if got := conns.Load(); got != 1 {
		t.Errorf("%d connections for 40 sequential sends, want 1", got)
	}
}

func TestSendConcurrent(t *testing.T) {
	// Each response echoes the request's recipient, so a buffer shared by mistake shows up.
	c, _ := server(t, func(w http.ResponseWriter, r *http.Request) {
		var req SendRequest
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			w.WriteHeader(400)
			return
		}
		fmt.Fprintf(w, `{"messaging_product":"whatsapp","contacts":[{"input":%q,"wa_id":%q}],"messages":[{"id":"wamid.%s"}]}`,
			req.To, strings.TrimPrefix(req.To, "+"), req.BizOpaqueCallbackData)
	})
	var wg sync.WaitGroup
	for g := 0; g < 16; g++ {
		wg.Go(func() {
			for i := 0; i < 25; i++ {
				to := fmt.Sprintf("+1650555%04d", g*100+i)
				req := SendRequest{To: to, Type: "text", Text: &Text{Body: strings.Repeat("y", g*50)},
					BizOpaqueCallbackData: fmt.Sprintf("c:%d", g*100+i)}
				res, err := c.Send(context.Background(), "1", "t", req)
				if err != nil {
					t.Error(err)
					return
				}
				if res.WaID != to[1:] || res.MessageID != "wamid."+req.BizOpaqueCallbackData {
					t.Errorf("sent %s, got %+v", to, res)
				}
			}
		})
	}
	wg.Wait()
}

func TestSendRefusesEmptyCredentials(t *testing.T) {
	c, conns := server(t, func(w http.ResponseWriter, r *http.Request) { t.Error("request made") })
	for _, args := range [][2]string{{"", "t"}, {"1", ""}} {
		_, err := c.Send(context.Background(), args[0], args[1], templateRequest())
		if !errors.Is(err, ErrInvalidRequest) || Classify(err).Action != ActionFailJob {
			t.Errorf("Send(%q, %q) = %v", args[0], args[1], err)
		}
	}
	if conns.Load() != 0 {
		t.Error("connected")
	}
}

func TestClientConfigDefaults(t *testing.T) {
	c := NewClient(ClientConfig{})
	if c.base != "https://graph.facebook.com/v21.0/" {
		t.Errorf("base %q", c.base)
	}
	tr, ok := c.hc.Transport.(*http.Transport)
	if !ok || tr.MaxIdleConnsPerHost != 256 || c.hc.Timeout == 0 {
		t.Errorf("default client %+v", c.hc)
	}
	c = NewClient(ClientConfig{BaseURL: "http://127.0.0.1:9/", APIVersion: "v22.0"})
	if c.base != "http://127.0.0.1:9/v22.0/" {
		t.Errorf("base %q", c.base)
	}
}

func BenchmarkSend(b *testing.B) {
	c, _ := server(b, func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		io.WriteString(w, acceptedBody)
	})
	req := templateRequest()
	ctx := context.Background()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := c.Send(ctx, "106540352242922", "token", req); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
