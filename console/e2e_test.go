package console_test

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	cdplog "github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"github.com/herald-dev/herald/analytics"
	"github.com/herald-dev/herald/channels/whatsapp/sandbox"
	"github.com/herald-dev/herald/console"
	"github.com/herald-dev/herald/dispatcher"
	"github.com/herald-dev/herald/internal/api"
	"github.com/herald-dev/herald/internal/apikeys"
	"github.com/herald-dev/herald/internal/app"
	"github.com/herald-dev/herald/internal/testenv"
	"github.com/herald-dev/herald/templates"
)

func TestMain(m *testing.M) { testenv.Main(m) }

const welcomeTemplate = `name: welcome
channel: whatsapp
locale: en_US
kind: whatsapp_template
whatsapp:
  name: welcome_offer
  language: en_US
  category: MARKETING
  body:
    first_name: "{{ name | default: 'friend' }}"
variables:
  name: {type: string, default: ""}
`

const senderID = "106540352242922"

// chromium finds Debian's chromium (deploy/local-stack.sh install-browser, which
// `make test` runs, installs it).
func chromium(t *testing.T) string {
	t.Helper()
	for _, p := range []string{os.Getenv("HERALD_CHROMIUM"), "/usr/bin/chromium"} {
		if p != "" {
			if _, err := os.Stat(p); err == nil {
				return p
			}
		}
	}
	if p, err := exec.LookPath("chromium"); err == nil {
		return p
	}
	t.Skip("chromium is not installed: run `deploy/local-stack.sh install-browser` (make test does) to run the console's browser tests")
	return ""
}

// stack is a real serve (API and console), worker, sink and the WhatsApp sandbox on
// the test's own Redis prefix, ClickHouse database and kfake.
type stack struct {
	*app.Stack
	comp    *app.Components
	brokers []string
	keys    map[string]string
	ids     map[string]string
}

func startStack(t *testing.T) *stack {
	t.Helper()
	_, prefix := testenv.Redis(t)
	_, db := testenv.ClickHouse(t)
	brokers, topics := testenv.Kafka(t, 2)
	cfg := app.Config{KafkaBrokers: brokers, TopicPrefix: strings.TrimSuffix(topics.Outbound, "outbound"),
		RedisURL: "redis://" + testenv.RedisAddr(t) + "/0", Prefix: prefix, ClickHouseDSN: testenv.ClickHouseDSN(t, db), Partitions: 2,
		API: api.Handler, Console: console.Handler(), APIRate: 500, APIBurst: 500}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	s, err := app.NewStack(ctx, cfg, "", sandbox.Config{Throughput: 1000, DelayScale: 0.02, ReadRate: 0.5, Seed: 7,
		Templates: []sandbox.ApprovedTemplate{{Name: "welcome_offer", Language: "en_US", Category: "MARKETING", BodyParams: []string{"first_name"}}}})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("stack: %v", err)
		}
		s.Close()
	})
	comp, err := s.Deps.Components()
	if err != nil {
		t.Fatal(err)
	}
	st := &stack{Stack: s, comp: comp, brokers: brokers, keys: map[string]string{}, ids: map[string]string{}}
	for _, k := range []struct {
		name   string
		role   apikeys.Role
		launch bool
	}{{"launcher", apikeys.Marketer, true}, {"analyst", apikeys.Analyst, false}, {"auditor", apikeys.Auditor, false}} {
		c, err := comp.Keys.Create(ctx, apikeys.Spec{Name: k.name, Role: k.role, CanLaunch: k.launch})
		if err != nil {
			t.Fatal(err)
		}
		st.keys[k.name], st.ids[k.name] = c.Secret, c.ID
	}
	tpl, err := templates.ParseFile([]byte(welcomeTemplate), "welcome.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := comp.Templates.Save(ctx, tpl, []byte(welcomeTemplate)); err != nil {
		t.Fatal(err)
	}
	if err := comp.Senders.Put(ctx, dispatcher.Sender{ID: senderID, Channel: "whatsapp", PhoneNumberID: senderID, Token: app.DevSandboxToken, Rate: 200}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "serve", func() bool {
		res, err := http.Get(s.ServeURL + "/v1/openapi.json")
		if err == nil {
			res.Body.Close()
		}
		return err == nil && res.StatusCode == 200
	})
	return st
}

// call makes an API request with a key (Bearer), as a script would.
func (s *stack) call(t *testing.T, key, method, path string, body any) (int, []byte) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, s.ServeURL+path, rd)
	req.Header.Set("Authorization", "Bearer "+s.keys[key])
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, b
}

func waitFor(t *testing.T, within time.Duration, what string, f func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !f() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// browser is one headless Chromium with a fresh profile; console errors and uncaught
// exceptions of its pages are collected.
type browser struct {
	ctx    context.Context
	shots  string
	mu     sync.Mutex
	errors []string
}

func newBrowser(t *testing.T) *browser {
	t.Helper()
	path := chromium(t)
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(path), chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun,
		chromedp.Flag("disable-background-networking", true), chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.UserDataDir(t.TempDir()), chromedp.WindowSize(1280, 900))
	b := &browser{shots: os.Getenv("HERALD_SCREENSHOT_DIR")}
	if b.shots == "" {
		b.shots = t.TempDir()
	}
	ctx, cancel := chromedp.NewContext(alloc, chromedp.WithListener(func(ev any) {
		switch ev := ev.(type) {
		case *runtime.EventConsoleAPICalled:
			if ev.Type == runtime.ConsoleAPICalledTypeError || ev.Type == runtime.ConsoleAPICalledTypeWarning || ev.Type == runtime.ConsoleAPICalledTypeAssert {
				var parts []string
				for _, a := range ev.Args {
					if len(a.Value) > 0 {
						parts = append(parts, string(a.Value))
					} else {
						parts = append(parts, a.Description)
					}
				}
				b.mu.Lock()
				b.errors = append(b.errors, fmt.Sprintf("console.%s: %s", ev.Type, strings.Join(parts, " ")))
				b.mu.Unlock()
			}
		case *cdplog.EventEntryAdded:
			// The browser's own log: a CSP violation, a deprecation turned error… Not
			// "network": the tests make refused requests on purpose (401, 403, 404).
			if e := ev.Entry; e.Level == cdplog.EntryLevelError && e.Source != cdplog.EntrySourceNetwork {
				b.mu.Lock()
				b.errors = append(b.errors, fmt.Sprintf("browser log (%s): %s %s", e.Source, e.Text, e.URL))
				b.mu.Unlock()
			}
		case *runtime.EventExceptionThrown:
			d := ev.ExceptionDetails
			msg := d.Text
			if d.Exception != nil {
				msg += " " + d.Exception.Description
			}
			b.mu.Lock()
			b.errors = append(b.errors, fmt.Sprintf("exception at %s:%d: %s", d.URL, d.LineNumber, msg))
			b.mu.Unlock()
		}
	}))
	t.Cleanup(func() {
		cancel()
		cancelAlloc()
	})
	if err := chromedp.Do(ctx); err != nil { // start the browser on a context without a deadline
		t.Fatalf("start chromium: %v", err)
	}
	b.ctx = ctx
	return b
}

// do runs steps with a bound on their time.
func (b *browser) do(t *testing.T, what string, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 90*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		b.shot(t, "failed-"+strings.ReplaceAll(what, " ", "-"))
		t.Fatalf("%s: %v", what, err)
	}
}

func eval[T any](t *testing.T, b *browser, expr string) T {
	t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 60*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr, chromedp.EvalAwaitPromise))
	if err != nil {
		t.Fatalf("evaluate %s: %v", expr, err)
	}
	return v
}

// poll waits for a JavaScript condition in the page.
func poll(expr string, within time.Duration) chromedp.Action[chromedp.Void] {
	return chromedp.Poll[chromedp.Void](expr, chromedp.WithPollingTimeout(within), chromedp.WithPollingInterval(50*time.Millisecond))
}

func (b *browser) shot(t *testing.T, name string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Logf("screenshot %s: %v", name, err)
		return
	}
	p := filepath.Join(b.shots, name+".png")
	if err := os.WriteFile(p, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot %s", p)
}

func (b *browser) checkNoErrors(t *testing.T) {
	t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, e := range b.errors {
		t.Errorf("the page wrote to the console: %s", e)
	}
}

// setSelect picks an option of a <select> as a person would (a change event).
func setSelect(sel, value string) chromedp.Action[chromedp.Void] {
	return chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		_, err := chromedp.Evaluate[chromedp.Void](fmt.Sprintf(`(() => { const s = document.querySelector(%q); s.value = %q;
			s.dispatchEvent(new Event("change", {bubbles: true})); })()`, sel, value))(ctx, tg)
		return err
	})
}

// A marketer logs in with an API key, builds a campaign, dry-runs and launches it
// against the sandbox, watches its progress bar reach 100%, reads the funnel's figures
// (they equal the API's, which equal the sandbox's record) and exports the deliveries
// CSV (each row agrees with what the sandbox did with that contact's message); a
// request without the session's CSRF token is refused; an analyst sees no launch
// button and the API refuses a launch with the analyst's session. No page writes an
// error to the console.
func TestConsoleEndToEnd(t *testing.T) {
	br := newBrowser(t)
	s := startStack(t)

	// 30 customers, 20 of whom consented to WhatsApp marketing.
	var contacts []map[string]any
	for i := range 30 {
		contacts = append(contacts, map[string]any{"phone": fmt.Sprintf("+6683%07d", i+1), "name": fmt.Sprintf("Customer %d", i+1), "tags": []string{"customer"}})
	}
	code, body := s.call(t, "launcher", "POST", "/v1/contacts:bulk", map[string]any{"contacts": contacts})
	var bulk app.BulkUpsertResult
	if err := json.Unmarshal(body, &bulk); err != nil || code != 200 || bulk.Upserted != 30 {
		t.Fatalf("bulk: %d %s", code, body)
	}
	phoneOf := map[uint32]string{}
	for i, id := range bulk.ContactIDs {
		phoneOf[id] = strings.TrimPrefix(contacts[i]["phone"].(string), "+")
	}
	for i := range 20 {
		if code, body := s.call(t, "launcher", "POST", "/v1/consent", map[string]any{"phone": fmt.Sprintf("+6683%07d", i+1),
			"action": "grant", "source": "web_form", "wording": "Yes, send me offers on WhatsApp"}); code != 200 && code != 201 {
			t.Fatalf("consent: %d %s", code, body)
		}
	}

	base := s.ServeURL + console.Path
	br.do(t, "open the login page", chromedp.Navigate(base), chromedp.WaitVisible(chromedp.CSS("#api-key")))
	br.shot(t, "login")
	br.do(t, "log in", chromedp.SendKeys(chromedp.CSS("#api-key"), s.keys["launcher"]), chromedp.Click(chromedp.CSS("#login")),
		chromedp.WaitVisible(chromedp.CSS(`#who[data-role="marketer"]`)))
	if v := eval[bool](t, br, `document.cookie.includes("herald_session")`); v {
		t.Error("the session cookie is readable by the page's JavaScript (want HttpOnly)")
	}

	// Create and launch.
	br.do(t, "open the campaign form", chromedp.Navigate(base+"#/new"), chromedp.WaitVisible(chromedp.CSS("#name")),
		poll(`document.querySelectorAll("#template option").length > 1 && document.getElementById("sender-`+senderID+`") !== null`, 30*time.Second),
		chromedp.SendKeys(chromedp.CSS("#name"), "spring in the browser"),
		chromedp.SendKeys(chromedp.CSS("#segment"), "customer"),
		setSelect("#template", "welcome"))
	if code, _ := s.call(t, "launcher", "GET", "/v1/segments/count?expr=customer", nil); code == 200 {
		// The live count (GET /v1/segments/count) is on this server: the builder shows it.
		br.do(t, "the audience's live count", poll(`(document.getElementById("audience-count") || {}).dataset?.count === "30"`, 30*time.Second))
	} else {
		t.Logf("GET /v1/segments/count answers %d: the live count is not checked, only that the form says it is missing", code)
		br.do(t, "the form says the live count is missing", poll(`document.body.textContent.includes("no live count")`, 30*time.Second))
	}
	if code, body := s.call(t, "launcher", "POST", "/v1/templates/welcome/preview", map[string]any{"sample": 1}); code == 200 {
		br.do(t, "the template's preview", chromedp.WaitVisible(chromedp.CSS("#template-preview")))
	} else {
		t.Logf("POST /v1/templates/{name}/preview answers %d (%.80s): the preview is not checked, only that the form says it is missing", code, body)
		br.do(t, "the form says the preview is missing", poll(`document.body.textContent.includes("no template preview")`, 30*time.Second))
	}
	// The count and the preview are in (or said to be missing): the form's layout holds
	// still, so the click lands on the sender.
	br.do(t, "choose the sender", chromedp.Click(chromedp.CSS("#sender-"+senderID)), poll(`document.getElementById("sender-`+senderID+`").checked`, 10*time.Second))
	br.do(t, "create and dry-run", poll(`!document.getElementById("create").disabled`, 10*time.Second), chromedp.Click(chromedp.CSS("#create")),
		chromedp.WaitVisible(chromedp.CSS("#dry-run")), chromedp.WaitVisible(chromedp.CSS("#launch")))
	br.shot(t, "new-campaign")
	br.do(t, "launch", chromedp.Click(chromedp.CSS("#launch")), poll(`location.hash.startsWith("#/campaigns/")`, 60*time.Second))
	id := strings.TrimPrefix(eval[string](t, br, `decodeURIComponent(location.hash)`), "#/campaigns/")
	br.do(t, "progress reaches 100%", poll(`(() => { const p = document.querySelector(".progress[data-campaign]");
		return p && p.dataset.percent === "100" && p.dataset.state === "completed"; })()`, 2*time.Minute))
	bar := eval[map[string]string](t, br, `({...document.querySelector(".progress").dataset})`)
	if bar["done"] != "30" || bar["audience"] != "30" {
		t.Fatalf("progress bar %v, want 30 of 30", bar)
	}

	// Once the sandbox's last webhook and the sink are through, the funnel's figures
	// on the page equal the API's and the sandbox's.
	wctx, wcancel := context.WithTimeout(context.Background(), time.Minute)
	defer wcancel()
	if err := s.Sandbox.WaitIdle(wctx); err != nil {
		t.Fatal(err)
	}
	if err := analytics.WaitCaughtUp(wctx, s.brokers, analytics.DefaultSinkGroup, s.Deps.Topics.Events, s.Deps.Topics.Consent, s.Deps.Topics.Audit); err != nil {
		t.Fatal(err)
	}
	// The login is in the API's audit, under the marketer's key.
	code, body = s.call(t, "auditor", "GET", "/v1/audit/api?key_id="+s.ids["launcher"], nil)
	if code != 200 || !strings.Contains(string(body), `"route":"POST /v1/session","resource_id":"`+s.ids["launcher"]+`","status":201`) {
		t.Errorf("the audit of the marketer's key: %d %s", code, body)
	}
	br.do(t, "reload the campaign page", chromedp.Reload(), chromedp.WaitVisible(chromedp.CSS("#funnel-figures")), chromedp.WaitVisible(chromedp.CSS("#deliveries")))
	br.shot(t, "campaign")
	figures := eval[map[string]string](t, br, `Object.fromEntries([...document.querySelectorAll("#funnel-figures tr[data-step]")].map(
		(r) => [r.dataset.step, r.querySelector(".contacts").textContent.replace(/,/g, "")]))`)
	code, body = s.call(t, "analyst", "GET", "/v1/reports/funnel?campaign="+id, nil)
	var f analytics.FunnelReport
	if err := json.Unmarshal(body, &f); err != nil || code != 200 {
		t.Fatalf("funnel: %d %s", code, body)
	}
	if len(figures) != len(f.Steps) {
		t.Fatalf("the page shows %d funnel steps %v, the API %d", len(figures), figures, len(f.Steps))
	}
	for _, st := range f.Steps {
		if figures[st.Name] != strconv.FormatUint(st.Contacts, 10) {
			t.Errorf("funnel step %s: the page says %q, the API %d", st.Name, figures[st.Name], st.Contacts)
		}
	}
	if err := app.SandboxTruth(s.Sandbox.Records(), id).Check(f); err != nil {
		t.Fatalf("funnel %+v vs the sandbox: %v", f.Steps, err)
	}
	if f.Steps[0].Contacts != 30 || f.Steps[1].Contacts != 20 {
		t.Fatalf("funnel %+v", f.Steps)
	}
	br.do(t, "the breakdown by sender", chromedp.WaitVisible(chromedp.CSS(`#breakdown[data-by="sender"] tr[data-key="`+senderID+`"]`)))
	br.do(t, "the breakdown by country", setSelect("#breakdown-by", "country"), chromedp.WaitVisible(chromedp.CSS(`#breakdown[data-by="country"]`)))
	skipped := eval[string](t, br, `document.getElementById("skip-reasons").textContent`)
	if !strings.Contains(skipped, "10") {
		t.Errorf("skip reasons %q: want the 10 contacts without consent", skipped)
	}

	// The deliveries CSV, fetched as the Export link does (with the session cookie).
	csvText := eval[string](t, br, `fetch(document.getElementById("export-csv").href).then((r) => r.text())`)
	rows, err := csv.NewReader(strings.NewReader(csvText)).ReadAll()
	if err != nil {
		t.Fatalf("CSV: %v\n%s", err, csvText)
	}
	if len(rows) != 31 || strings.Join(rows[0], ",") != strings.Join(api.DeliveryCSVHeader, ",") {
		t.Fatalf("CSV: %d rows, header %v", len(rows), rows[0])
	}
	final := map[string]string{} // phone → what the sandbox decided
	for _, r := range s.Sandbox.Records() {
		if strings.HasPrefix(r.CallbackData, id+":") {
			final[r.WaID] = r.Final
		}
	}
	nSkipped := 0
	for _, r := range rows[1:] {
		cid, _ := strconv.ParseUint(r[0], 10, 32)
		phone, ok := phoneOf[uint32(cid)]
		if !ok {
			t.Fatalf("CSV row of an unknown contact: %v", r)
		}
		want, sent := final[phone]
		switch {
		case !sent:
			nSkipped++
			if r[1] != "skipped" || r[8] == "" {
				t.Errorf("contact %d was not sent to, but its row says %v", cid, r)
			}
		case want == "failed":
			if r[1] != "failed" || r[9] == "" {
				t.Errorf("contact %d: the sandbox failed it, the row says %v", cid, r)
			}
		default:
			if r[1] != want || r[4] != senderID || r[10] == "" {
				t.Errorf("contact %d: the sandbox says %s, the row %v", cid, want, r)
			}
		}
	}
	if nSkipped != 10 || len(final) != 20 {
		t.Errorf("%d rows without a send, %d sends, want 10 and 20", nSkipped, len(final))
	}

	checkCampaignSections(t, br, s, id)
	checkSendersAndReports(t, br, s, base)

	// The list shows the campaign complete.
	br.do(t, "the campaigns list", chromedp.Navigate(base+"#/campaigns"),
		poll(`(document.querySelector('tr[data-id="`+id+`"] .progress') || {dataset: {}}).dataset.percent === "100"`, 30*time.Second))
	br.shot(t, "campaigns")

	// CSRF: a cookie-authenticated change without the token is refused, with it it passes.
	code, body = s.call(t, "launcher", "POST", "/v1/campaigns", map[string]any{"name": "draft for the analyst", "segment": "customer",
		"template": "welcome", "senders": []string{senderID}})
	var draft dispatcher.Campaign
	if err := json.Unmarshal(body, &draft); err != nil || code != 201 {
		t.Fatalf("create: %d %s", code, body)
	}
	noToken := eval[map[string]any](t, br, `fetch("/v1/campaigns/`+draft.ID+`/cancel", {method: "POST"}).then(async (r) => ({status: r.status, type: (await r.json()).type}))`)
	if noToken["status"] != float64(403) || noToken["type"] != "urn:herald:problem:csrf" {
		t.Errorf("POST without X-CSRF-Token: %v, want 403 csrf", noToken)
	}

	// An analyst: no launch button, and the API refuses a launch with the session.
	br.do(t, "log out", chromedp.Click(chromedp.CSS("#logout")), chromedp.WaitVisible(chromedp.CSS("#api-key")))
	br.do(t, "log in as an analyst", chromedp.SendKeys(chromedp.CSS("#api-key"), s.keys["analyst"]), chromedp.Click(chromedp.CSS("#login")),
		chromedp.WaitVisible(chromedp.CSS(`#who[data-role="analyst"]`)),
		chromedp.Navigate(base+"#/campaigns/"+draft.ID), chromedp.WaitVisible(chromedp.CSS("#campaign-state")))
	br.shot(t, "analyst-draft")
	buttons := eval[int](t, br, `document.querySelectorAll("#launch, #pause, #resume, #cancel, #new-campaign").length`)
	if buttons != 0 {
		t.Errorf("an analyst is offered %d campaign actions", buttons)
	}
	refused := eval[map[string]any](t, br, `fetch("/v1/session").then((r) => r.json()).then((s) => fetch("/v1/campaigns/`+draft.ID+`/launch",
		{method: "POST", headers: {"X-CSRF-Token": s.csrf_token}})).then(async (r) => ({status: r.status, type: (await r.json()).type}))`)
	if refused["status"] != float64(403) || refused["type"] != "urn:herald:problem:forbidden" {
		t.Errorf("an analyst's launch: %v, want 403 forbidden", refused)
	}
	if st, err := s.comp.Campaigns.Status(context.Background(), draft.ID); err != nil || st.State != dispatcher.Draft {
		t.Errorf("the draft after the analyst's launch: %v %v", st.State, err)
	}
	// Revoking the analyst's key ends the session: the next request brings back the login.
	if _, err := s.comp.Keys.Revoke(context.Background(), "analyst"); err != nil {
		t.Fatal(err)
	}
	br.do(t, "back to the login after the key's revocation", chromedp.Navigate(base+"#/templates"), chromedp.WaitVisible(chromedp.CSS("#api-key")))
	checkAuditPages(t, br, s, base, id, bulk.ContactIDs[0])
	br.checkNoErrors(t)
}
