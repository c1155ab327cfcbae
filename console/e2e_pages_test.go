package console_test

import (
	"encoding/json"
	"strconv"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/herald-dev/herald/analytics"
	"github.com/herald-dev/herald/internal/app"
)

// getJSON makes an API request with a key and decodes the answer, which must be 200.
func (s *stack) getJSON(t *testing.T, key, path string, v any) {
	t.Helper()
	code, body := s.call(t, key, "GET", path, nil)
	if code != 200 {
		t.Fatalf("GET %s: %d %s", path, code, body)
	}
	if err := json.Unmarshal(body, v); err != nil {
		t.Fatalf("GET %s: %v\n%s", path, err, body)
	}
}

// checkCampaignSections reads, on the open campaign page, the timeline's total of sent
// contacts, the A/B table's sent contacts and the holdout lift's treated contacts, and
// compares each with the API's.
func checkCampaignSections(t *testing.T, br *browser, s *stack, id string) {
	t.Helper()
	var tl analytics.TimelineReport
	s.getJSON(t, "launcher", "/v1/campaigns/"+id+"/timeline?step=1m", &tl)
	var sent uint64
	for _, p := range tl.Points {
		sent += p.Sent
	}
	br.do(t, "the timeline", chromedp.WaitVisible(chromedp.CSS(`#timeline-totals [data-kind="sent"]`)))
	if got := eval[string](t, br, `document.querySelector('#timeline-totals [data-kind="sent"]').dataset.total`); got != strconv.FormatUint(sent, 10) || sent != 20 {
		t.Errorf("the timeline's sent total: the page says %s, the API %d (want 20)", got, sent)
	}

	var ab analytics.ABReport
	s.getJSON(t, "launcher", "/v1/reports/ab?campaign="+id+"&step=read", &ab)
	br.do(t, "open the A/B variants", chromedp.Click(chromedp.CSS("#ab > summary")), chromedp.WaitVisible(chromedp.CSS("#ab-variants")))
	if len(ab.Variants) == 0 {
		t.Fatalf("A/B report without variants: %+v", ab)
	}
	v := ab.Variants[0]
	got := eval[string](t, br, `document.querySelector('#ab-variants tr[data-variant="`+v.Variant+`"] [data-sent]').dataset.sent`)
	if got != strconv.FormatUint(v.Sent, 10) {
		t.Errorf("A/B variant %q: the page says %s sent, the API %d", v.Variant, got, v.Sent)
	}

	var lift analytics.LiftReport
	s.getJSON(t, "launcher", "/v1/reports/lift?campaign="+id, &lift)
	br.do(t, "open the holdout lift", chromedp.Click(chromedp.CSS("#lift > summary")), chromedp.WaitVisible(chromedp.CSS("#lift-groups")))
	if got := eval[string](t, br, `document.querySelector('#lift-groups tr[data-group="treated"] [data-contacts]').dataset.contacts`); got != strconv.FormatUint(lift.Treated.Contacts, 10) {
		t.Errorf("lift: the page says %s treated contacts, the API %d", got, lift.Treated.Contacts)
	}
	br.shot(t, "campaign-experiments")
}

// checkSendersAndReports opens the senders page (the governor's state refreshes by
// itself; the rate it shows is the API's) and the reports page (the send-hour heatmap's
// total, the retention cohort's size and the anomaly table's rows are the API's).
func checkSendersAndReports(t *testing.T, br *browser, s *stack, base string) {
	t.Helper()
	var st app.SenderState
	s.getJSON(t, "launcher", "/v1/senders/"+senderID+"/governor", &st)
	br.do(t, "the senders page", chromedp.Navigate(base+"#/senders"),
		poll(`(document.querySelector('#senders tr[data-sender="`+senderID+`"]') || {dataset: {}}).dataset.factor !== undefined`, 30*time.Second))
	first := eval[string](t, br, `document.getElementById("governor-updated").dataset.updated`)
	rate := eval[string](t, br, `document.querySelector('#senders tr[data-sender="`+senderID+`"] [data-effective-rate]').dataset.effectiveRate`)
	if want := strconv.FormatFloat(st.Sender.Rate*st.Governor.Factor, 'f', -1, 64); rate != want {
		t.Errorf("the sender's rate now: the page says %s, the API %s", rate, want)
	}
	br.do(t, "the governor's state refreshes", poll(`document.getElementById("governor-updated").dataset.updated !== `+strconv.Quote(first), 30*time.Second))
	br.shot(t, "senders")

	var hm analytics.HeatmapReport
	s.getJSON(t, "launcher", "/v1/reports/heatmap", &hm)
	var total uint64
	for _, c := range hm.Cells {
		total += c.Sent
	}
	var ret analytics.RetentionReport
	s.getJSON(t, "launcher", "/v1/reports/retention?weeks=8", &ret)
	var an analytics.AnomalyReport
	s.getJSON(t, "launcher", "/v1/reports/anomalies", &an)
	br.do(t, "the reports page", chromedp.Navigate(base+"#/reports"),
		chromedp.WaitVisible(chromedp.CSS("#send-hours-total")), chromedp.WaitVisible(chromedp.CSS("#retention")), chromedp.WaitVisible(chromedp.CSS("#anomalies")))
	if got := eval[string](t, br, `document.getElementById("send-hours-total").dataset.total`); got != strconv.FormatUint(total, 10) || total != 20 {
		t.Errorf("send hours: the page says %s messages, the API %d (want 20)", got, total)
	}
	if len(ret.Cohorts) == 0 {
		t.Fatalf("retention without cohorts: %+v", ret)
	}
	c := ret.Cohorts[len(ret.Cohorts)-1]
	if got := eval[string](t, br, `document.querySelector('#retention tr[data-key="`+c.Week+`"] td[data-col="0"]').textContent`); got != strconv.FormatUint(c.Contacts, 10) {
		t.Errorf("retention cohort %s: the page says %s contacts, the API %d", c.Week, got, c.Contacts)
	}
	if got := eval[int](t, br, `document.querySelectorAll("#anomalies tbody tr").length`); got != len(an.Days) {
		t.Errorf("anomalies: the page lists %d days, the API %d", got, len(an.Days))
	}
	br.shot(t, "reports")
}

// checkAuditPages logs in as the auditor and opens the campaign's consent proof (its
// count of checked messages is the API's, with no violation) and a contact's ledger (its
// records and hash-chain status are the API's).
func checkAuditPages(t *testing.T, br *browser, s *stack, base, campaign string, contact uint32) {
	t.Helper()
	br.do(t, "log in as the auditor", chromedp.SendKeys(chromedp.CSS("#api-key"), s.keys["auditor"]), chromedp.Click(chromedp.CSS("#login")),
		chromedp.WaitVisible(chromedp.CSS(`#who[data-role="auditor"]`)))
	var proof analytics.AuditReport
	s.getJSON(t, "auditor", "/v1/audit/campaigns/"+campaign, &proof)
	br.do(t, "the campaign's consent proof", chromedp.Navigate(base+"#/audit/campaign/"+campaign), chromedp.WaitVisible(chromedp.CSS("#campaign-proof")))
	got := eval[map[string]string](t, br, `({...document.getElementById("campaign-proof").dataset})`)
	if got["sent"] != strconv.FormatUint(proof.Sent, 10) || got["violations"] != strconv.Itoa(len(proof.Violations)) || proof.Sent != 20 || len(proof.Violations) != 0 {
		t.Errorf("campaign proof: the page says %v, the API %d sent, %d violations (want 20, 0)", got, proof.Sent, len(proof.Violations))
	}
	br.shot(t, "audit-campaign")

	var led analytics.ContactAudit
	id := strconv.FormatUint(uint64(contact), 10)
	s.getJSON(t, "auditor", "/v1/audit/contacts/"+id, &led)
	br.do(t, "the contact's ledger", chromedp.Navigate(base+"#/audit/contact/"+id), chromedp.WaitVisible(chromedp.CSS("#contact-ledger")))
	records := eval[string](t, br, `document.getElementById("contact-ledger").dataset.records`)
	ok := eval[string](t, br, `document.getElementById("chain-status").dataset.ok`)
	status := eval[string](t, br, `document.getElementById("ledger-status").dataset.status`)
	if records != strconv.Itoa(len(led.Consent)) || len(led.Consent) == 0 || ok != strconv.FormatBool(led.ChainOK()) || !led.ChainOK() || status != led.Ledger.Status {
		t.Errorf("contact %s's ledger: the page says %s records, chain ok %s, status %s; the API %d, %v, %s",
			id, records, ok, status, len(led.Consent), led.ChainOK(), led.Ledger.Status)
	}
	br.shot(t, "audit-contact")
	br.do(t, "the API's audit", chromedp.Navigate(base+"#/audit"), chromedp.WaitVisible(chromedp.CSS("#audit")))
}
