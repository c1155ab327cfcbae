// Package apiclient is a small typed client of Herald's /v1 HTTP API, for the CLI acting
// on a remote Herald (HERALD_API_URL with HERALD_API_KEY, the way kubectl and gh do).
// It decodes answers into the types the handlers print (dispatcher.Status,
// analytics.FunnelReport, app.TagResult…), so a command prints the same thing whether
// it ran locally or through the API; a problem+json answer is a *Problem.
package apiclient

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/herald-dev/herald/analytics"
	"github.com/herald-dev/herald/dispatcher"
	"github.com/herald-dev/herald/internal/app"
	"github.com/herald-dev/herald/internal/events"
	"github.com/herald-dev/herald/segments"
)

// Client calls one Herald's API with one key.
type Client struct {
	BaseURL string // e.g. http://127.0.0.1:8080
	Key     string // hk_…
	HTTP    *http.Client
}

// New makes a client; the key is sent as a bearer token and never printed.
func New(baseURL, key string) *Client {
	return &Client{BaseURL: strings.TrimRight(baseURL, "/"), Key: key, HTTP: &http.Client{Timeout: 5 * time.Minute}}
}

// Problem is an error answer of the API (RFC 9457).
type Problem struct {
	Type      string `json:"type"`
	Title     string `json:"title"`
	Status    int    `json:"status"`
	Detail    string `json:"detail"`
	RequestID string `json:"request_id"`
	Errors    []struct {
		Pointer   string `json:"pointer"`
		Parameter string `json:"parameter"`
		Header    string `json:"header"`
		Detail    string `json:"detail"`
	} `json:"errors"`
}

func (p *Problem) Error() string {
	if p.Detail != "" {
		return p.Detail
	}
	return fmt.Sprintf("%s (HTTP %d)", p.Title, p.Status)
}

// Refused reports whether the request itself was wrong (400, 413, 415, 422): the
// CLI's usage errors. A conflict or an unknown resource is not (exit 1, as locally).
func (p *Problem) Refused() bool {
	switch p.Status {
	case 400, 413, 415, 422:
		return true
	}
	return false
}

// Do sends a request (body as JSON unless nil) and decodes a 2xx answer into out (when
// not nil).
func (c *Client) Do(ctx context.Context, method, path string, query url.Values, body, out any) error {
	if body == nil {
		return c.do(ctx, method, path, query, "", nil, out)
	}
	b, err := json.Marshal(body)
	if err != nil {
		return err
	}
	return c.do(ctx, method, path, query, "application/json", b, out)
}

func (c *Client) do(ctx context.Context, method, path string, query url.Values, contentType string, body []byte, out any) error {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	u := c.BaseURL + path
	if len(query) > 0 {
		u += "?" + query.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return err
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	req.Header.Set("Authorization", "Bearer "+c.Key)
	res, err := c.HTTP.Do(req)
	if err != nil {
		return fmt.Errorf("API %s %s: %w", method, path, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		return fmt.Errorf("API %s %s: %w", method, path, err)
	}
	if res.StatusCode >= 300 {
		p := &Problem{Status: res.StatusCode, Title: res.Status}
		_ = json.Unmarshal(b, p)
		return p
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("API %s %s: decode the answer: %w", method, path, err)
	}
	return nil
}

type page[T any] struct {
	Items      []T    `json:"items"`
	NextCursor string `json:"next_cursor"`
}

// all reads every page of a list.
func all[T any](ctx context.Context, c *Client, path string, query url.Values, max int) ([]T, error) {
	var out []T
	if query == nil {
		query = url.Values{}
	}
	for {
		var p page[T]
		if err := c.Do(ctx, http.MethodGet, path, query, nil, &p); err != nil {
			return nil, err
		}
		out = append(out, p.Items...)
		if p.NextCursor == "" || (max > 0 && len(out) >= max) {
			if max > 0 && len(out) > max {
				out = out[:max]
			}
			return out, nil
		}
		query.Set("cursor", p.NextCursor)
	}
}

// SegmentCount is GET /v1/segments/count.
type SegmentCount struct {
	Expression string `json:"expression"`
	Count      uint64 `json:"count"`
}

// CountSegment counts an expression's members.
func (c *Client) CountSegment(ctx context.Context, expr string) (SegmentCount, error) {
	var sc SegmentCount
	err := c.Do(ctx, http.MethodGet, "/v1/segments/count", url.Values{"expr": {expr}}, nil, &sc)
	return sc, err
}

// Tags lists the tag library with counts.
func (c *Client) Tags(ctx context.Context) ([]segments.TagCount, error) {
	return all[segments.TagCount](ctx, c, "/v1/tags", url.Values{"limit": {"1000"}}, 0)
}

// TagTarget names contacts for Tag, one way (as app.TagTarget; File is the file's text).
type TagTarget struct {
	ContactIDs    []uint64 `json:"contact_ids,omitempty"`
	Phones        []string `json:"phones,omitempty"`
	File          *string  `json:"file,omitempty"`
	Segment       string   `json:"segment,omitempty"`
	DefaultRegion string   `json:"default_region,omitempty"`
}

// Tag adds (add) or removes a tag.
func (c *Client) Tag(ctx context.Context, tag string, add bool, t TagTarget) (app.TagResult, error) {
	verb := ":remove"
	if add {
		verb = ":add"
	}
	var r app.TagResult
	err := c.Do(ctx, http.MethodPost, "/v1/tags/"+url.PathEscape(tag)+verb, nil, t, &r)
	return r, err
}

// Campaigns lists up to limit campaigns, newest first.
func (c *Client) Campaigns(ctx context.Context, limit int) ([]dispatcher.Status, error) {
	return all[dispatcher.Status](ctx, c, "/v1/campaigns", url.Values{"limit": {strconv.Itoa(min(max(limit, 1), 200))}}, limit)
}

// Campaign is a campaign's status.
func (c *Client) Campaign(ctx context.Context, id string) (dispatcher.Status, error) {
	var st dispatcher.Status
	err := c.Do(ctx, http.MethodGet, "/v1/campaigns/"+url.PathEscape(id), nil, nil, &st)
	return st, err
}

// CampaignAction is launch, pause, resume or cancel; at (launch only) schedules it.
func (c *Client) CampaignAction(ctx context.Context, id, action string, at time.Time) (dispatcher.Status, error) {
	var body any = map[string]any{}
	if !at.IsZero() {
		body = map[string]any{"at": at}
	}
	var st dispatcher.Status
	err := c.Do(ctx, http.MethodPost, "/v1/campaigns/"+url.PathEscape(id)+"/"+action, nil, body, &st)
	return st, err
}

// CreateCampaign creates a draft; cp holds the fields as the API takes them.
func (c *Client) CreateCampaign(ctx context.Context, cp map[string]any) (dispatcher.Campaign, error) {
	var out dispatcher.Campaign
	err := c.Do(ctx, http.MethodPost, "/v1/campaigns", nil, cp, &out)
	return out, err
}

// DryRun is a campaign's dry run.
func (c *Client) DryRun(ctx context.Context, id string) (dispatcher.DryRun, error) {
	var raw struct {
		dispatcher.DryRun
		ETAMS   float64 `json:"eta_ms"`
		Senders []struct {
			dispatcher.SenderPlan
			ETAMS float64 `json:"eta_ms"`
		} `json:"senders"`
	}
	if err := c.Do(ctx, http.MethodPost, "/v1/campaigns/"+url.PathEscape(id)+"/dry-run", nil, map[string]any{}, &raw); err != nil {
		return dispatcher.DryRun{}, err
	}
	dr := raw.DryRun
	dr.ETA = time.Duration(raw.ETAMS * float64(time.Millisecond))
	dr.Senders = nil
	for _, s := range raw.Senders {
		p := s.SenderPlan
		p.ETA = time.Duration(s.ETAMS * float64(time.Millisecond))
		dr.Senders = append(dr.Senders, p)
	}
	return dr, nil
}

// Funnel is a campaign's funnel.
func (c *Client) Funnel(ctx context.Context, campaign string) (analytics.FunnelReport, error) {
	var f analytics.FunnelReport
	err := c.Do(ctx, http.MethodGet, "/v1/reports/funnel", url.Values{"campaign": {campaign}}, nil, &f)
	return f, err
}

// Channels is a campaign's funnel per channel with its fallbacks.
func (c *Client) Channels(ctx context.Context, campaign string) (analytics.ChannelsReport, error) {
	var r analytics.ChannelsReport
	err := c.Do(ctx, http.MethodGet, "/v1/reports/channels", url.Values{"campaign": {campaign}}, nil, &r)
	return r, err
}

// FunnelBy is a campaign's funnel split by variant, sender, country or channel.
func (c *Client) FunnelBy(ctx context.Context, campaign, by string) (analytics.FunnelByReport, error) {
	var f analytics.FunnelByReport
	err := c.Do(ctx, http.MethodGet, "/v1/reports/funnel", url.Values{"campaign": {campaign}, "by": {by}}, nil, &f)
	return f, err
}

// Import uploads a CSV (format csv) or JSON Lines (jsonl) file as an import job, waits
// for it (polling every poll), and returns the finished job with its rejects (the
// first 1,000).
func (c *Client) Import(ctx context.Context, file []byte, format string, q url.Values, poll time.Duration) (app.ImportJob, []segments.Reject, error) {
	ct := "text/csv"
	if format == "jsonl" {
		ct = "application/x-ndjson"
	}
	var job app.ImportJob
	if err := c.do(ctx, http.MethodPost, "/v1/imports", q, ct, file, &job); err != nil {
		return job, nil, err
	}
	for job.State == app.ImportRunning {
		select {
		case <-ctx.Done():
			return job, nil, ctx.Err()
		case <-time.After(poll):
		}
		if err := c.Do(ctx, http.MethodGet, "/v1/imports/"+url.PathEscape(job.ID), nil, nil, &job); err != nil {
			return job, nil, err
		}
	}
	if job.State != app.ImportDone {
		return job, nil, fmt.Errorf("import %s %s: %s", job.ID, job.State, job.Error)
	}
	rejects, err := all[segments.Reject](ctx, c, "/v1/imports/"+url.PathEscape(job.ID)+"/rejects", url.Values{"limit": {"1000"}}, 0)
	return job, rejects, err
}

// ConsentChange is POST /v1/consent's body (the API names the key as the actor).
type ConsentChange struct {
	Phone          string     `json:"phone,omitempty"`
	Action         string     `json:"action"`
	Channel        string     `json:"channel,omitempty"`
	Purpose        string     `json:"purpose,omitempty"`
	Source         string     `json:"source,omitempty"`
	Wording        string     `json:"wording,omitempty"`
	WordingVersion string     `json:"wording_version,omitempty"`
	IP             string     `json:"ip,omitempty"`
	UserAgent      string     `json:"user_agent,omitempty"`
	Proof          string     `json:"proof,omitempty"`
	At             *time.Time `json:"at,omitempty"`
}

// Consent grants or revokes: the ledger records written (none when nothing changed).
func (c *Client) Consent(ctx context.Context, ch ConsentChange) ([]events.ConsentRecord, error) {
	var res struct {
		Records []events.ConsentRecord `json:"records"`
	}
	err := c.Do(ctx, http.MethodPost, "/v1/consent", nil, ch, &res)
	return res.Records, err
}

// FindContact returns the id of the contact with an identity as the CLI takes it: a
// phone, an email, telegram:<chat id>, line:<user id> or #<contact id>. None is a
// *Problem with status 404, as the API answers an unknown id.
func (c *Client) FindContact(ctx context.Context, identity string) (uint32, error) {
	identity = strings.TrimSpace(identity)
	if rest, ok := strings.CutPrefix(identity, "#"); ok {
		n, err := strconv.ParseUint(rest, 10, 32)
		if err != nil || n == 0 {
			return 0, fmt.Errorf("%q: a contact id is # and a positive integer", identity)
		}
		return uint32(n), nil
	}
	q := url.Values{}
	switch {
	case strings.HasPrefix(strings.ToLower(identity), "telegram:"):
		q.Set("telegram_chat_id", identity[len("telegram:"):])
	case strings.HasPrefix(strings.ToLower(identity), "line:"):
		q.Set("line_user_id", identity[len("line:"):])
	case strings.Contains(identity, "@"):
		q.Set("email", identity)
	default:
		q.Set("phone", identity)
	}
	var res struct {
		Items []segments.Contact `json:"items"`
	}
	if err := c.Do(ctx, http.MethodGet, "/v1/contacts", q, nil, &res); err != nil {
		return 0, err
	}
	if len(res.Items) == 0 {
		return 0, &Problem{Status: http.StatusNotFound, Title: "Not found", Detail: fmt.Sprintf("no contact has %s", identity)}
	}
	return res.Items[0].ID, nil
}

// Contact returns a contact's profile.
func (c *Client) Contact(ctx context.Context, id uint32) (segments.Contact, error) {
	var ct segments.Contact
	err := c.Do(ctx, http.MethodGet, "/v1/contacts/"+strconv.FormatUint(uint64(id), 10), nil, nil, &ct)
	return ct, err
}

// EraseContact erases a contact, revoking purposes (none: the API's default).
func (c *Client) EraseContact(ctx context.Context, id uint32, purposes []string) (segments.Erased, error) {
	var er segments.Erased
	err := c.Do(ctx, http.MethodDelete, "/v1/contacts/"+strconv.FormatUint(uint64(id), 10), url.Values{"purpose": purposes}, nil, &er)
	return er, err
}

// ContactConsent returns a contact's consent on channels for purposes.
func (c *Client) ContactConsent(ctx context.Context, id uint32, channels, purposes []string) ([]app.ConsentRow, error) {
	var res struct {
		Items []app.ConsentRow `json:"items"`
	}
	q := url.Values{"channel": {strings.Join(channels, ",")}, "purpose": {strings.Join(purposes, ",")}}
	err := c.Do(ctx, http.MethodGet, "/v1/contacts/"+strconv.FormatUint(uint64(id), 10)+"/consent", q, nil, &res)
	return res.Items, err
}
