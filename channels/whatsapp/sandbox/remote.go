package sandbox

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"
)

// Remote reads a sandbox that runs in another process (`herald sandbox`) over its HTTP
// API: what a benchmark asks of an in-process Sandbox (Records, Stats, WaitIdle), so the
// simulator's CPU can be counted apart from Herald's.
type Remote struct {
	URL   string       // base URL, e.g. http://127.0.0.1:9080
	Token string       // bearer token for the Graph routes (template registration)
	HTTP  *http.Client // default http.DefaultClient
	// PageSize is how many records one GET /_sandbox/records asks for (default 20,000).
	PageSize int
}

func (r *Remote) client() *http.Client {
	if r.HTTP != nil {
		return r.HTTP
	}
	return http.DefaultClient
}

func (r *Remote) getJSON(ctx context.Context, path string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, r.URL+path, nil)
	if err != nil {
		return err
	}
	resp, err := r.client().Do(req)
	if err != nil {
		return fmt.Errorf("sandbox %s: %w", path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
		return fmt.Errorf("sandbox %s: HTTP %d: %s", path, resp.StatusCode, b)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		return fmt.Errorf("sandbox %s: decode: %w", path, err)
	}
	return nil
}

// Stats returns the remote sandbox's counters.
func (r *Remote) Stats(ctx context.Context) (Stats, error) {
	var st Stats
	err := r.getJSON(ctx, "/_sandbox/stats", &st)
	return st, err
}

// Records returns every record of the remote sandbox, in order, page by page.
func (r *Remote) Records(ctx context.Context) ([]Record, error) {
	size := r.PageSize
	if size <= 0 {
		size = 20_000
	}
	var all []Record
	for {
		var page []Record
		if err := r.getJSON(ctx, "/_sandbox/records?offset="+strconv.Itoa(len(all))+"&limit="+strconv.Itoa(size), &page); err != nil {
			return nil, err
		}
		all = append(all, page...)
		if len(page) < size {
			return all, nil
		}
	}
}

// WaitIdle polls the remote sandbox until nothing is pending delivery, or ctx ends.
func (r *Remote) WaitIdle(ctx context.Context) error {
	for {
		st, err := r.Stats(ctx)
		if err == nil && st.Pending == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("sandbox: wait idle with %d items pending (%v): %w", st.Pending, err, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// WaitReady polls the remote sandbox until it answers, or ctx ends.
func (r *Remote) WaitReady(ctx context.Context) error {
	for {
		_, err := r.Stats(ctx)
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("sandbox at %s: not answering: %w (%w)", r.URL, ctx.Err(), err)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// CreateTemplate registers an approved template through the Graph route
// (POST /v21.0/{waba-id}/message_templates), its params derived from body.
func (r *Remote) CreateTemplate(ctx context.Context, wabaID, name, language, category, body string) error {
	in := map[string]any{"name": name, "language": language, "category": category,
		"components": []map[string]string{{"type": "BODY", "text": body}}}
	b, err := json.Marshal(in)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, r.URL+"/v21.0/"+wabaID+"/message_templates", bytes.NewReader(b))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	if r.Token != "" {
		req.Header.Set("Authorization", "Bearer "+r.Token)
	}
	resp, err := r.client().Do(req)
	if err != nil {
		return fmt.Errorf("sandbox: create template %s: %w", name, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
		return fmt.Errorf("sandbox: create template %s: HTTP %d: %s", name, resp.StatusCode, msg)
	}
	return nil
}
