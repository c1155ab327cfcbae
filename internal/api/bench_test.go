package api

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/herald-dev/herald/internal/app"
	"github.com/herald-dev/herald/segments"
)

// post sends a JSON body with a key, without the spec validation of env.do (whose cost
// is the test's, not the API's).
func (e *env) post(b testing.TB, key, path string, body []byte) (int, []byte) {
	hr, err := http.NewRequestWithContext(e.ctx, http.MethodPost, e.base+path, bytes.NewReader(body))
	if err != nil {
		b.Fatal(err)
	}
	hr.Header.Set("Content-Type", "application/json")
	hr.Header.Set("Authorization", "Bearer "+e.keys[key])
	res, err := http.DefaultClient.Do(hr)
	if err != nil {
		b.Fatal(err)
	}
	defer res.Body.Close()
	rb, _ := io.ReadAll(res.Body)
	return res.StatusCode, rb
}

func (e *env) get(b testing.TB, key, path string) int {
	hr, err := http.NewRequestWithContext(e.ctx, http.MethodGet, e.base+path, nil)
	if err != nil {
		b.Fatal(err)
	}
	hr.Header.Set("Authorization", "Bearer "+e.keys[key])
	res, err := http.DefaultClient.Do(hr)
	if err != nil {
		b.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, res.Body)
	res.Body.Close()
	return res.StatusCode
}

// BenchmarkBulkUpsertVsImport upserts the same number of new contacts through
// POST /v1/contacts:bulk (batches of 5,000) and through the CLI's import (app.ImportContacts
// of a CSV) in the same run, and reports both rates and their ratio (the target is
// api/cli ≥ 0.5).
//
//	go test ./internal/api -run '^$' -bench BulkUpsertVsImport -benchtime 3x
func BenchmarkBulkUpsertVsImport(b *testing.B) {
	e := newEnv(b, func(c *Config) { c.MaxBody = 16 << 20 })
	const rows = 20000
	var apiDur, cliDur time.Duration
	for i := 0; b.Loop(); i++ {
		var csv strings.Builder
		csv.WriteString("phone,name,tags\n")
		for r := range rows {
			fmt.Fprintf(&csv, "+6681%07d,CLI %d,bench\n", i*rows+r, r)
		}
		start := time.Now()
		rep, err := app.ImportContacts(e.ctx, e.d, strings.NewReader(csv.String()), app.ImportOptions{Source: "bench"})
		cliDur += time.Since(start)
		if err != nil || rep.Created != rows {
			b.Fatalf("import: %+v %v", rep, err)
		}
		var bodies [][]byte
		for start := 0; start < rows; start += 5000 {
			cs := make([]map[string]any, 0, 5000)
			for r := start; r < start+5000; r++ {
				cs = append(cs, map[string]any{"phone": fmt.Sprintf("+6682%07d", i*rows+r), "name": fmt.Sprintf("API %d", r), "tags": []string{"bench"}})
			}
			body, _ := json.Marshal(map[string]any{"contacts": cs})
			bodies = append(bodies, body)
		}
		// Two requests in flight, as a CRM's sync would keep a couple open: one is
		// decoded while the other's batch is in Redis (the import overlaps the same way).
		start = time.Now()
		var wg sync.WaitGroup
		next := atomic.Int64{}
		for range 2 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for j := next.Add(1) - 1; j < int64(len(bodies)); j = next.Add(1) - 1 {
					if status, rb := e.post(b, "marketer", "/v1/contacts:bulk", bodies[j]); status != 200 {
						b.Errorf("bulk: %d %s", status, rb)
						return
					}
				}
			}()
		}
		wg.Wait()
		apiDur += time.Since(start)
		if b.Failed() {
			b.FailNow()
		}
	}
	n := float64(b.N * rows)
	apiRate, cliRate := n/apiDur.Seconds(), n/cliDur.Seconds()
	b.ReportMetric(apiRate, "api_rows/s")
	b.ReportMetric(cliRate, "cli_rows/s")
	b.ReportMetric(apiRate/cliRate, "api/cli")
}

// BenchmarkMixedLoad runs 8 clients against the API at once, each request one of:
// GET a contact, GET the campaign list, GET a segment count (reads), POST a contact,
// POST a consent grant (writes), 3 reads to 2 writes; it reports requests a second and
// the p50 and p99 latency.
//
//	go test ./internal/api -run '^$' -bench MixedLoad -benchtime 2000x
func BenchmarkMixedLoad(b *testing.B) {
	e := newEnv(b, func(c *Config) { c.Rate, c.Burst = 1e6, 1e6 })
	e.fixtures()
	// Consent goes to a contact of its own per request, as a CRM's would: changes of one
	// contact's consent are applied one at a time (the ledger's writer lock).
	var cs []segments.Contact
	for i := range b.N + 1 {
		cs = append(cs, segments.Contact{Phone: fmt.Sprintf("+6686%07d", i)})
	}
	ids, err := e.comp.Contacts.Upsert(e.ctx, cs)
	if err != nil {
		b.Fatal(err)
	}
	var seq atomic.Int64
	var mu sync.Mutex
	var lat []time.Duration
	expr := url.QueryEscape("customer or vip")
	b.SetParallelism(4) // 4 × GOMAXPROCS clients
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		var mine []time.Duration
		for pb.Next() {
			i := seq.Add(1)
			t0 := time.Now()
			var status int
			switch i % 5 {
			case 0:
				status = e.get(b, "marketer", "/v1/contacts/1")
			case 1:
				status = e.get(b, "marketer", "/v1/campaigns?limit=10")
			case 2:
				status = e.get(b, "marketer", "/v1/segments/count?expr="+expr)
			case 3:
				status, _ = e.post(b, "marketer", "/v1/contacts", []byte(fmt.Sprintf(`{"phone":"+6685%07d","tags":["load"]}`, i)))
			default:
				status, _ = e.post(b, "marketer", "/v1/consent", []byte(fmt.Sprintf(`{"contact_id":%d,"action":"grant","source":"bench"}`, ids[int(i)%len(ids)])))
			}
			mine = append(mine, time.Since(t0))
			if status >= 300 {
				b.Errorf("request %d: status %d", i, status)
				return
			}
		}
		mu.Lock()
		lat = append(lat, mine...)
		mu.Unlock()
	})
	elapsed := time.Since(start)
	slices.Sort(lat)
	if len(lat) == 0 {
		return
	}
	b.ReportMetric(float64(len(lat))/elapsed.Seconds(), "req/s")
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50_ms")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99_ms")
}
