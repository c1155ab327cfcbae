package app

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/herald-dev/herald/segments"
)

// ImportJob is a contacts import running in the background (POST /v1/imports): its
// progress while it runs, its counts when done. Any serve process can answer for it:
// the state is in Redis.
type ImportJob struct {
	ID        string    `json:"id"`
	State     string    `json:"state"` // running, done or failed
	Format    string    `json:"format"`
	Source    string    `json:"source,omitempty"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
	Read      int64     `json:"read"`    // rows read so far
	Created   int64     `json:"created"` // when done
	Updated   int64     `json:"updated"` // when done
	Unchanged int64     `json:"unchanged"`
	Imported  int64     `json:"imported"` // created + updated + unchanged
	Rejected  int64     `json:"rejected"`
	Error     string    `json:"error,omitempty"` // failed: why
}

// The states of an import job.
const (
	ImportRunning = "running"
	ImportDone    = "done"
	ImportFailed  = "failed"
)

// ImportJobs keeps import jobs in Redis:
//
//	P{imports}:job:ID          HASH: the job's fields (as ImportJob's JSON keys, times in unix ms)
//	P{imports}:job:ID:rejects  LIST: the row rejects as JSON (the first 1,000), in line order
//
// both kept ImportJobTTL after the last change. A running job refreshes updated_at at
// least every ImportHeartbeat; one silent for 6 heartbeats died with its process and
// reads as failed.
type ImportJobs struct {
	rdb    redis.UniversalClient
	prefix string
}

// ImportJobTTL is how long a job's record is kept; ImportHeartbeat how often a running
// job says it is alive.
const (
	ImportJobTTL    = 7 * 24 * time.Hour
	ImportHeartbeat = 5 * time.Second
)

// NewImportJobs keeps import jobs under prefix.
func NewImportJobs(rdb redis.UniversalClient, prefix string) *ImportJobs {
	return &ImportJobs{rdb: rdb, prefix: prefix}
}

func (j *ImportJobs) key(id string) string { return j.prefix + "{imports}:job:" + id }

// ErrImportNotFound is an import job that does not exist (or expired).
var ErrImportNotFound = errors.New("no such import")

// Start records a new job and runs the import of body in the background (its own
// context: it ends when the import does, not with the request). o.Progress is set by
// Start.
func (j *ImportJobs) Start(d *Deps, body []byte, o ImportOptions) (ImportJob, error) {
	if o.Format == "" {
		o.Format = "csv"
	}
	if o.Format != "csv" && o.Format != "jsonl" {
		return ImportJob{}, fieldErr("format", "%q: want csv or jsonl", o.Format)
	}
	b := make([]byte, 10)
	_, _ = rand.Read(b)
	now := time.Now().UTC()
	job := ImportJob{ID: "imp_" + hex.EncodeToString(b), State: ImportRunning, Format: o.Format, Source: o.Source, CreatedAt: now, UpdatedAt: now}
	ctx := context.Background()
	if err := j.save(ctx, job.ID, map[string]any{"state": job.State, "format": job.Format, "source": job.Source,
		"created_at": now.UnixMilli(), "updated_at": now.UnixMilli(), "read": 0}); err != nil {
		return job, err
	}
	go j.run(d, job.ID, body, o)
	return job, nil
}

func (j *ImportJobs) save(ctx context.Context, id string, fields map[string]any) error {
	pipe := j.rdb.TxPipeline()
	pipe.HSet(ctx, j.key(id), fields)
	pipe.Expire(ctx, j.key(id), ImportJobTTL)
	_, err := pipe.Exec(ctx)
	if err != nil {
		return fmt.Errorf("import %s: save: %w", id, err)
	}
	return nil
}

func (j *ImportJobs) run(d *Deps, id string, body []byte, o ImportOptions) {
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Hour)
	defer cancel()
	log := d.Cfg.Logger
	var read atomic.Int64 // rows read, from the import's progress
	beat := func() {
		if err := j.save(ctx, id, map[string]any{"read": read.Load(), "updated_at": time.Now().UnixMilli()}); err != nil && log != nil {
			log.Warn("import progress not saved", "import", id, "err", err)
		}
	}
	o.Progress = func(rows, _ int64) { read.Store(rows) }
	stop := make(chan struct{})
	ticked := make(chan struct{})
	go func() {
		defer close(ticked)
		t := time.NewTicker(ImportHeartbeat / 5)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				beat()
			}
		}
	}()
	rep, err := ImportContacts(ctx, d, bytes.NewReader(body), o)
	close(stop)
	<-ticked
	fields := map[string]any{"updated_at": time.Now().UnixMilli(), "read": rep.Read, "created": rep.Created, "updated": rep.Updated,
		"unchanged": rep.Unchanged, "rejected": rep.Rejected, "state": ImportDone}
	if err != nil {
		fields["state"], fields["error"] = ImportFailed, err.Error()
	}
	if len(rep.Rejects) > 0 {
		vals := make([]any, len(rep.Rejects))
		for i, r := range rep.Rejects {
			b, _ := json.Marshal(r)
			vals[i] = b
		}
		pipe := j.rdb.TxPipeline()
		pipe.RPush(ctx, j.key(id)+":rejects", vals...)
		pipe.Expire(ctx, j.key(id)+":rejects", ImportJobTTL)
		if _, perr := pipe.Exec(ctx); perr != nil && log != nil {
			log.Error("import rejects not saved", "import", id, "err", perr)
		}
	}
	// The state last: a client that sees done finds the rejects.
	if err := j.save(ctx, id, fields); err != nil && log != nil {
		log.Error("import result not saved", "import", id, "err", err)
	}
}

// Get reads a job. A running job silent for 6 heartbeats reads as failed.
func (j *ImportJobs) Get(ctx context.Context, id string) (ImportJob, error) {
	m, err := j.rdb.HGetAll(ctx, j.key(id)).Result()
	if err != nil {
		return ImportJob{}, fmt.Errorf("import %s: %w", id, err)
	}
	if len(m) == 0 {
		return ImportJob{}, fmt.Errorf("import %s: %w", id, ErrImportNotFound)
	}
	n := func(k string) int64 { v, _ := strconv.ParseInt(m[k], 10, 64); return v }
	job := ImportJob{ID: id, State: m["state"], Format: m["format"], Source: m["source"], Error: m["error"],
		CreatedAt: time.UnixMilli(n("created_at")).UTC(), UpdatedAt: time.UnixMilli(n("updated_at")).UTC(),
		Read: n("read"), Created: n("created"), Updated: n("updated"), Unchanged: n("unchanged"), Rejected: n("rejected")}
	job.Imported = job.Created + job.Updated + job.Unchanged
	if job.State == ImportRunning && time.Since(job.UpdatedAt) > 6*ImportHeartbeat {
		job.State, job.Error = ImportFailed, "the process running the import stopped; import the file again (rows already imported are unchanged)"
	}
	return job, nil
}

// Rejects reads up to limit of a job's rejects from offset (in line order), and
// whether more follow.
func (j *ImportJobs) Rejects(ctx context.Context, id string, offset, limit int64) ([]segments.Reject, bool, error) {
	if _, err := j.Get(ctx, id); err != nil {
		return nil, false, err
	}
	vals, err := j.rdb.LRange(ctx, j.key(id)+":rejects", offset, offset+limit).Result()
	if err != nil {
		return nil, false, fmt.Errorf("import %s: rejects: %w", id, err)
	}
	more := int64(len(vals)) > limit
	if more {
		vals = vals[:limit]
	}
	out := make([]segments.Reject, 0, len(vals))
	for _, v := range vals {
		var r segments.Reject
		if err := json.Unmarshal([]byte(v), &r); err != nil {
			return nil, false, fmt.Errorf("import %s: reject %q: %w", id, v, err)
		}
		out = append(out, r)
	}
	return out, more, nil
}
