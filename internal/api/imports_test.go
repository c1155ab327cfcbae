package api

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/herald-dev/herald/internal/app"
	"github.com/herald-dev/herald/segments"
)

// An import over the API runs in the background: 202 with the job, progress to done
// with the counts the CLI's import gives the same file, the rejects by line and reason
// in pages, and an Idempotency-Key retry starts no second job.
func TestImports(t *testing.T) {
	e := newEnv(t)
	var csv strings.Builder
	csv.WriteString("phone,name,tags\n")
	for i := range 1200 {
		fmt.Fprintf(&csv, "+6683%07d,Customer %d,imported\n", i+1, i+1)
		if i%500 == 0 {
			csv.WriteString("12,too short,x\n")
		}
	}
	r := e.do(req{method: "POST", path: "/v1/imports?source=crm&add_tag=crm", key: "marketer", body: csv.String(),
		header: map[string]string{"Content-Type": "text/csv", "Idempotency-Key": "import-a"}})
	var job app.ImportJob
	r.decode(t, &job)
	if r.status != 202 || job.State != app.ImportRunning || r.header.Get("Location") != "/v1/imports/"+job.ID {
		t.Fatalf("start: %d %s", r.status, r.body)
	}
	again := e.do(req{method: "POST", path: "/v1/imports?source=crm&add_tag=crm", key: "marketer", body: csv.String(),
		header: map[string]string{"Content-Type": "text/csv", "Idempotency-Key": "import-a"}})
	var job2 app.ImportJob
	again.decode(t, &job2)
	if job2.ID != job.ID || again.header.Get("Idempotent-Replayed") != "true" {
		t.Fatalf("retry started job %s (first %s)", job2.ID, job.ID)
	}
	waitFor(t, time.Minute, "the import", func() bool {
		job = app.ImportJob{}
		e.do(req{method: "GET", path: "/v1/imports/" + job2.ID, key: "marketer"}).decode(t, &job)
		return job.State != app.ImportRunning
	})
	if job.State != app.ImportDone || job.Read != 1203 || job.Created != 1200 || job.Imported != 1200 || job.Rejected != 3 {
		t.Fatalf("done: %+v", job)
	}
	n, err := e.comp.Contacts.Count(e.ctx, "imported and crm")
	if err != nil || n != 1200 {
		t.Fatalf("%d contacts imported and tagged, %v", n, err)
	}
	var rejects []segments.Reject
	cur := ""
	for range 10 {
		path := "/v1/imports/" + job.ID + "/rejects?limit=2"
		if cur != "" {
			path += "&cursor=" + cur
		}
		var p page[segments.Reject]
		e.do(req{method: "GET", path: path, key: "marketer"}).decode(t, &p)
		rejects = append(rejects, p.Items...)
		if cur = p.NextCursor; cur == "" {
			break
		}
	}
	if len(rejects) != 3 || rejects[0].Line != 3 || rejects[0].Reason != "invalid phone" || rejects[1].Line != 504 {
		t.Fatalf("rejects: %+v", rejects)
	}

	// The same file again through the CLI's use case: the same rows read and refused, every contact unchanged.
	rep, err := app.ImportContacts(e.ctx, e.d, strings.NewReader(csv.String()), app.ImportOptions{Source: "crm", AddTags: []string{"crm"}})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Read != job.Read || rep.Rejected != job.Rejected || rep.Unchanged != 1200 {
		t.Fatalf("the CLI's import of the same file: %+v", rep)
	}

	// JSON Lines; and what is refused.
	r = e.do(req{method: "POST", path: "/v1/imports", key: "marketer", body: `{"phone":"+66840000001","name":"J"}` + "\n",
		header: map[string]string{"Content-Type": "application/x-ndjson"}})
	r.decode(t, &job)
	waitFor(t, time.Minute, "the jsonl import", func() bool {
		e.do(req{method: "GET", path: "/v1/imports/" + job.ID, key: "marketer"}).decode(t, &job)
		return job.State != app.ImportRunning
	})
	if job.State != app.ImportDone || job.Created != 1 || job.Format != "jsonl" {
		t.Fatalf("jsonl: %+v", job)
	}
	if r := e.do(req{method: "POST", path: "/v1/imports", key: "marketer", body: map[string]any{"phone": "x"}, invalid: true}); r.status != 415 {
		t.Fatalf("a JSON body: %d %s", r.status, r.body)
	}
	if r := e.do(req{method: "GET", path: "/v1/imports/imp_nope", key: "marketer"}); r.status != 404 {
		t.Fatalf("unknown import: %d", r.status)
	}
	if r := e.do(req{method: "POST", path: "/v1/imports", key: "analyst", body: "phone\n+66840000002\n", header: map[string]string{"Content-Type": "text/csv"}}); r.status != 403 {
		t.Fatalf("an analyst imported: %d", r.status)
	}
}

// An import's file may be larger than the 4 MiB other calls are held to: a 5 MiB
// export is taken and imported row by row.
func TestImportLargerThanTheBodyLimit(t *testing.T) {
	e := newEnv(t)
	var b strings.Builder
	b.WriteString("phone,name,notes\n")
	note := strings.Repeat("n", 1000)
	for i := 0; b.Len() <= 5<<20; i++ {
		fmt.Fprintf(&b, "+6684%07d,Row %d,%s\n", i, i, note)
	}
	rows := int64(strings.Count(b.String(), "\n") - 1)
	var job app.ImportJob
	r := e.do(req{method: "POST", path: "/v1/imports", key: "marketer", body: b.String(), header: map[string]string{"Content-Type": "text/csv"}})
	r.decode(t, &job)
	if r.status != 202 {
		t.Fatalf("a %d-byte import: %d %s", b.Len(), r.status, r.body)
	}
	waitFor(t, 2*time.Minute, "the large import", func() bool {
		e.do(req{method: "GET", path: "/v1/imports/" + job.ID, key: "marketer"}).decode(t, &job)
		return job.State != app.ImportRunning
	})
	if job.State != app.ImportDone || job.Read != rows || job.Created+job.Rejected != rows {
		t.Fatalf("%d rows: %+v", rows, job)
	}
	// Other calls keep their limit.
	big := `{"contacts":[{"phone":"+66840000001","name":"` + strings.Repeat("x", 5<<20) + `"}]}`
	if r := e.do(req{method: "POST", path: "/v1/contacts:bulk", key: "marketer", body: []byte(big), invalid: true}); r.status != 413 {
		t.Fatalf("a 5 MiB bulk upsert: %d", r.status)
	}
}
