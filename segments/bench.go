package segments

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"golang.org/x/sync/errgroup"

	"github.com/herald-dev/herald/internal/procstat"
)

// BenchConfig configures RunBench, the `herald bench segments` scenario. It writes
// under Prefix in Redis, which should be a private server: the scenario changes its
// slow log and latency monitor settings (and restores them).
type BenchConfig struct {
	Redis  redis.UniversalClient
	Prefix string // keys of the scenario; must not hold other data
	// Contacts is how many contacts are generated directly into Redis (profile,
	// identity, BenchTags tags each) for the evaluation, streaming and memory figures.
	Contacts int
	// ImportRows is how many rows the CSV import measures (0: min(Contacts, 1,000,000)).
	ImportRows int
	// Dir is where the generated CSV is written (and removed); "" is the system temp dir.
	Dir string
	// Seed makes the generated data reproducible.
	Seed uint64
	// Progress, when set, is told how far each stage is.
	Progress func(stage string, done, total int64)
}

// ImportGCPercent is the garbage collector's target percentage (GOGC) a command-line
// import sets for its run: an import allocates a few kilobytes a row and keeps
// little, so at the default of 100 a fifth of its CPU goes to collecting. At 400 the
// heap peaks at five times what the import's batches in flight hold, whatever the
// file's size: about 45 MB live and 200 MB at most with batches of 4,000 rows (13 and
// 60 MB with 1,000).
const ImportGCPercent = 400

// BenchTags is how many tags each generated contact has.
const BenchTags = 10

// BenchExpr is the 5-term expression the scenario evaluates.
const BenchExpr = "vip and (country:TH or country:ID) and not churned and locale:th"

// SlowCommand is a Redis command from the slow log.
type SlowCommand struct {
	Command string  `json:"command"` // name and first arguments, shortened
	TookMS  float64 `json:"took_ms"`
}

// BenchResult is what RunBench measured. Durations are in milliseconds, rates per
// second.
type BenchResult struct {
	Contacts int `json:"contacts"`
	// Generation: pipelined HSET of profile records and identity entries into their
	// buckets, the raw write baseline: what an import must write, without reading,
	// resolving, merging or parsing.
	GenerateMS    float64 `json:"generate_ms"`
	RawHSETPerSec float64 `json:"raw_hset_contacts_per_second"`
	// Memory: Redis used_memory added by the generated contacts, per contact.
	MemoryBytes      int64   `json:"memory_bytes"`
	MemoryPerContact float64 `json:"memory_bytes_per_contact"`
	// Import: CSV rows through ImportCSV into an empty prefix.
	ImportRows       int     `json:"import_rows"`
	ImportBytes      int64   `json:"import_bytes"`
	ImportMS         float64 `json:"import_ms"`
	ImportRowsPerSec float64 `json:"import_rows_per_second"`
	ImportVsRawHSET  float64 `json:"import_vs_raw_hset"` // import rate / raw HSET rate
	// CPU per imported row, of this process and of redis-server: on a shared machine
	// these are steadier than the wall-clock rate. ImportCPUBound is the rate two
	// dedicated cores would allow if both were busy all the time.
	ImportHeraldCPUMS    float64      `json:"import_herald_cpu_ms_per_row"`
	ImportRedisCPUMS     float64      `json:"import_redis_cpu_ms_per_row"`
	ImportCPUBound2Cores float64      `json:"import_cpu_bound_rows_per_second_2_cores"`
	Import               ImportReport `json:"import_report"`
	// Evaluation of BenchExpr over all contacts: the median and slowest of EvalRuns.
	Expr         string  `json:"expr"`
	EvalRuns     int     `json:"eval_runs"`
	EvalMedianMS float64 `json:"eval_median_ms"`
	EvalMaxMS    float64 `json:"eval_max_ms"`
	EvalMembers  uint64  `json:"eval_members"`
	// Streaming every live contact through a Snapshot in batches.
	StreamIDs       uint64  `json:"stream_ids"`
	StreamIDsPerSec float64 `json:"stream_ids_per_second"`
	// Slowest Redis commands (slow log threshold SlowLogThreshold) by phase.
	SlowLogThresholdMS float64                `json:"slowlog_threshold_ms"`
	Slowest            map[string]SlowCommand `json:"slowest"`
	// Latency monitor events (threshold LatencyThreshold): phase:name → worst spike.
	LatencyThresholdMS float64            `json:"latency_threshold_ms"`
	Latency            map[string]float64 `json:"latency_worst_ms"`
}

// benchTagNames is the tag library of generated contacts; each contact gets BenchTags
// of them, vip (~10%) and churned (~20%) with fixed odds, the rest uniformly.
func benchTagNames() []string {
	names := []string{"vip", "churned", "customer"}
	for i := range 37 {
		names = append(names, fmt.Sprintf("interest-%02d", i))
	}
	return names
}

// benchContact is the deterministic profile of generated contact id.
type benchContact struct {
	phone, country, tz, locale, lang string
	tags                             []int // indexes in benchTagNames
}

func genContact(rng *rand.Rand, id uint32, ntags int) benchContact {
	var c benchContact
	switch id % 4 {
	case 0:
		c.phone, c.country, c.tz, c.lang = fmt.Sprintf("+668%d%07d", 1+id%9, id/9%10_000_000), "TH", "Asia/Bangkok", "th"
	case 1:
		c.phone, c.country, c.tz, c.lang = fmt.Sprintf("+62812%08d", id), "ID", "Asia/Jakarta", "id"
	case 2:
		c.phone, c.country, c.tz, c.lang = fmt.Sprintf("+55119%08d", id), "BR", "America/Sao_Paulo", "pt"
	default:
		c.phone, c.country, c.tz, c.lang = fmt.Sprintf("+49151%08d", id), "DE", "Europe/Berlin", "de"
	}
	c.locale = c.lang
	if c.lang == "pt" {
		c.locale = "pt-BR"
	}
	if rng.IntN(5) == 0 {
		c.locale, c.lang = "en", "en"
	}
	if rng.IntN(10) == 0 {
		c.tags = append(c.tags, 0)
	}
	if rng.IntN(5) == 0 {
		c.tags = append(c.tags, 1)
	}
	for len(c.tags) < ntags {
		t := 2 + rng.IntN(38)
		if !slices.Contains(c.tags, t) {
			c.tags = append(c.tags, t)
		}
	}
	return c
}

// RunBench runs the segments scenario: generate Contacts contacts, measure Redis
// memory, import a generated CSV, evaluate BenchExpr and stream the members, while
// watching Redis's slow log and latency monitor.
func RunBench(ctx context.Context, cfg BenchConfig) (BenchResult, error) {
	res := BenchResult{Contacts: cfg.Contacts, Expr: BenchExpr, Slowest: map[string]SlowCommand{}, Latency: map[string]float64{}}
	if cfg.Contacts <= 0 || cfg.Contacts > 100_000_000 {
		return res, fmt.Errorf("bench: contacts %d: want 1 to 100,000,000", cfg.Contacts)
	}
	if cfg.ImportRows <= 0 {
		cfg.ImportRows = min(cfg.Contacts, 1_000_000)
	}
	res.ImportRows = cfg.ImportRows
	progress := cfg.Progress
	if progress == nil {
		progress = func(string, int64, int64) {}
	}
	rdb := cfg.Redis
	mon, err := startMonitor(ctx, rdb)
	if err != nil {
		return res, err
	}
	defer mon.restore(context.WithoutCancel(ctx))
	res.SlowLogThresholdMS, res.LatencyThresholdMS = ms(mon.slowThreshold), ms(mon.latencyThreshold)

	// 1. Generate contacts directly: the raw pipelined HSET baseline, and memory.
	s := NewStore(rdb, cfg.Prefix+"gen:")
	mem0, err := usedMemory(ctx, rdb)
	if err != nil {
		return res, err
	}
	start := time.Now()
	if err := s.generate(ctx, cfg.Contacts, cfg.Seed, func(n int64) { progress("generate", n, int64(cfg.Contacts)) }); err != nil {
		return res, err
	}
	took := time.Since(start)
	res.GenerateMS = ms(took)
	res.RawHSETPerSec = float64(cfg.Contacts) / took.Seconds()
	mem1, err := usedMemory(ctx, rdb)
	if err != nil {
		return res, err
	}
	res.MemoryBytes = mem1 - mem0
	res.MemoryPerContact = float64(res.MemoryBytes) / float64(cfg.Contacts)
	if err := mon.collect(ctx, "generate", &res); err != nil {
		return res, err
	}

	// 2. Import a generated CSV into an empty prefix.
	path, size, err := writeBenchCSV(cfg.Dir, cfg.ImportRows, func(n int64) { progress("write csv", n, int64(cfg.ImportRows)) })
	if err != nil {
		return res, err
	}
	defer os.Remove(path)
	res.ImportBytes = size
	f, err := os.Open(path)
	if err != nil {
		return res, fmt.Errorf("bench: %w", err)
	}
	defer f.Close()
	imp := NewStore(rdb, cfg.Prefix+"import:")
	redisCPU0, err := redisCPU(ctx, rdb)
	if err != nil {
		return res, err
	}
	// As `herald contacts import` does: an import allocates a few KB a row and keeps
	// little, so the collector runs less often with a larger heap goal.
	gc := debug.SetGCPercent(ImportGCPercent)
	cpu0 := procstat.CPU()
	start = time.Now()
	rep, err := imp.ImportCSV(ctx, bufio.NewReaderSize(f, 1<<20), ImportOptions{Source: "bench.csv", BatchSize: defaultBatch,
		Progress: func(rows, _ int64) { progress("import", rows, int64(cfg.ImportRows)) }})
	took = time.Since(start)
	res.ImportMS = ms(took)
	debug.SetGCPercent(gc)
	res.Import = rep
	if err != nil {
		return res, fmt.Errorf("bench: import: %w", err)
	}
	if rep.Rejected > 0 {
		return res, fmt.Errorf("bench: import rejected %d generated rows, first: %v", rep.Rejected, rep.Rejects[0])
	}
	res.ImportRowsPerSec = float64(rep.Read) / took.Seconds()
	redisCPU1, err := redisCPU(ctx, rdb)
	if err != nil {
		return res, err
	}
	res.ImportHeraldCPUMS = ms(procstat.CPU()-cpu0) / float64(rep.Read)
	res.ImportRedisCPUMS = ms(redisCPU1-redisCPU0) / float64(rep.Read)
	if total := res.ImportHeraldCPUMS + res.ImportRedisCPUMS; total > 0 {
		res.ImportCPUBound2Cores = 2e3 / total
	}
	res.ImportVsRawHSET = res.ImportRowsPerSec / res.RawHSETPerSec
	if err := mon.collect(ctx, "import", &res); err != nil {
		return res, err
	}

	// 3. Evaluate the expression over all generated contacts.
	const runs = 7
	times := make([]float64, 0, runs)
	var snap *Snapshot
	for i := range runs {
		progress("evaluate", int64(i), runs)
		t0 := time.Now()
		bm, err := s.Evaluate(ctx, BenchExpr)
		if err != nil {
			return res, fmt.Errorf("bench: %w", err)
		}
		times = append(times, float64(time.Since(t0).Microseconds())/1000)
		res.EvalMembers = bm.GetCardinality()
		if snap == nil {
			snap = NewSnapshot(bm)
		}
	}
	slices.Sort(times)
	res.EvalRuns, res.EvalMedianMS, res.EvalMaxMS = runs, times[runs/2], times[runs-1]
	if err := mon.collect(ctx, "evaluate", &res); err != nil {
		return res, err
	}

	// 4. Stream every live contact in batches, as a fan-out would.
	all, err := s.Snapshot(ctx, "not tag:bench-none")
	if err != nil {
		return res, fmt.Errorf("bench: %w", err)
	}
	buf := make([]uint32, 4096)
	var after uint32
	start = time.Now()
	for {
		ids := all.Next(after, buf)
		if len(ids) == 0 {
			break
		}
		res.StreamIDs += uint64(len(ids))
		after = ids[len(ids)-1]
	}
	res.StreamIDsPerSec = float64(res.StreamIDs) / time.Since(start).Seconds()
	if res.StreamIDs != uint64(cfg.Contacts) {
		return res, fmt.Errorf("bench: streamed %d ids of %d contacts", res.StreamIDs, cfg.Contacts)
	}
	return res, nil
}

// ms is d in milliseconds.
func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// generate writes n contacts (ids 1..n) directly, in the store's layout: pipelined
// HSETs of profile buckets and identity index buckets (a few per 1,000 contacts), then
// every bitmap with SETRANGE in 256 KiB pieces.
func (s *Store) generate(ctx context.Context, n int, seed uint64, progress func(int64)) error {
	names := benchTagNames()
	size := (n + 1 + 7) / 8
	bitmaps := map[string][]byte{s.kAll(): make([]byte, size)}
	for _, t := range names {
		bitmaps[s.kTag(t)] = make([]byte, size)
	}
	set := func(k string, id uint32) {
		b, ok := bitmaps[k]
		if !ok {
			b = make([]byte, size)
			bitmaps[k] = b
		}
		b[id/8] |= 0x80 >> (id % 8)
	}
	const batch = 1000
	now := strconv.FormatInt(s.now().UnixMilli(), 10)
	rng := rand.New(rand.NewPCG(seed, 1))
	// Profiles are built by one goroutine (the rng and bitmaps are not shared) and
	// written by two, so a round trip is always in flight.
	type chunk struct {
		first uint32
		cs    []benchContact
	}
	chunks := make(chan chunk, 4)
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		defer close(chunks)
		for first := 1; first <= n; first += batch {
			c := chunk{first: uint32(first)}
			for id := first; id < min(first+batch, n+1); id++ {
				bc := genContact(rng, uint32(id), BenchTags)
				set(s.kAll(), uint32(id))
				set(s.kAttr(FieldCountry, bc.country), uint32(id))
				set(s.kAttr(FieldLocale, bc.lang), uint32(id))
				for _, t := range bc.tags {
					set(s.kTag(names[t]), uint32(id))
				}
				c.cs = append(c.cs, bc)
			}
			select {
			case chunks <- c:
			case <-gctx.Done():
				return gctx.Err()
			}
		}
		return nil
	})
	var done atomic.Int64
	for range 2 {
		g.Go(func() error {
			for c := range chunks {
				pipe := s.rdb.Pipeline()
				var bucket []any
				var links []linkEntry
				for i, bc := range c.cs {
					id := c.first + uint32(i)
					p := profile{f: []field{{hPhone, bc.phone}, {hName, "Contact " + strconv.FormatUint(uint64(id), 10)},
						{hCountry, bc.country}, {hTZ, bc.tz}, {hLocale, bc.locale}, {hCreated, now}, {hSource, "bench"}}}
					bucket = append(bucket, id, encodeRecord(&p))
					if id%profileBucket == profileBucket-1 || i == len(c.cs)-1 {
						pipe.HSet(gctx, s.kProfiles(profileBucketOf(id)), bucket...)
						bucket = bucket[:0:0]
					}
					links = append(links, linkEntry{bc.phone, int64(id)})
				}
				for _, g := range groupLinks(links) {
					pipe.HSet(gctx, s.kIdentPhoneBucket(g.bucket), g.args...)
				}
				if _, err := pipe.Exec(gctx); err != nil {
					return fmt.Errorf("bench: write profiles: %w", err)
				}
				progress(done.Add(int64(len(c.cs))))
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	pipe := s.rdb.Pipeline()
	pipe.Set(ctx, s.kSeq(), n, 0)
	for _, t := range names {
		pipe.SAdd(ctx, s.kTags(), t)
	}
	for k, b := range bitmaps {
		const piece = 256 << 10
		for off := 0; off < len(b); off += piece {
			pipe.SetRange(ctx, k, int64(off), string(b[off:min(off+piece, len(b))]))
		}
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("bench: write bitmaps: %w", err)
	}
	return nil
}

// writeBenchCSV writes rows of contacts in the shapes people export (spaces in
// numbers, quoted names with commas, tags, consent) and returns its path and size.
func writeBenchCSV(dir string, rows int, progress func(int64)) (string, int64, error) {
	f, err := os.CreateTemp(dir, "herald-bench-*.csv")
	if err != nil {
		return "", 0, fmt.Errorf("bench: %w", err)
	}
	w := bufio.NewWriterSize(f, 1<<20)
	w.WriteString("phone,name,tags,opted_in,plan\n")
	for i := range rows {
		switch i % 4 {
		case 0:
			fmt.Fprintf(w, "+66 8%d %03d %04d,Name %d,\"vip;t%d\",yes,pro\n", 1+i/4%9, i/36%1000, i/36000%10000, i, i%20)
		case 1:
			fmt.Fprintf(w, "+62812%08d,Name %d,t%d,,free\n", i, i, i%20)
		case 2:
			fmt.Fprintf(w, "+55 11 9%04d-%04d,\"Name, %d\",,no,\n", i/10000, i%10000, i)
		default:
			fmt.Fprintf(w, "+49 151 %08d,Name %d,customer|t%d,1,pro\n", i, i, i%7)
		}
		if i%100_000 == 0 {
			progress(int64(i))
		}
	}
	err = w.Flush()
	st, serr := f.Stat()
	err = errors.Join(err, serr, f.Close())
	if err != nil {
		os.Remove(f.Name())
		return "", 0, fmt.Errorf("bench: write %s: %w", f.Name(), err)
	}
	return filepath.Clean(f.Name()), st.Size(), nil
}

func usedMemory(ctx context.Context, rdb redis.UniversalClient) (int64, error) {
	info, err := rdb.Info(ctx, "memory").Result()
	if err != nil {
		return 0, fmt.Errorf("bench: INFO memory: %w", err)
	}
	for _, l := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(l), "used_memory:"); ok {
			return strconv.ParseInt(v, 10, 64)
		}
	}
	return 0, errors.New("bench: INFO memory has no used_memory")
}

// redisCPU is the CPU time redis-server has used (INFO cpu).
func redisCPU(ctx context.Context, rdb redis.UniversalClient) (time.Duration, error) {
	info, err := rdb.Info(ctx, "cpu").Result()
	if err != nil {
		return 0, fmt.Errorf("bench: INFO cpu: %w", err)
	}
	var total float64
	for _, l := range strings.Split(info, "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(l), ":")
		if ok && (k == "used_cpu_user" || k == "used_cpu_sys") {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				return 0, fmt.Errorf("bench: INFO cpu %s: %w", k, err)
			}
			total += f
		}
	}
	return time.Duration(total * float64(time.Second)), nil
}

// monitor lowers the slow log and latency monitor thresholds for the scenario and
// reads what they caught after each phase.
type monitor struct {
	rdb                             redis.UniversalClient
	old                             map[string]string
	slowThreshold, latencyThreshold time.Duration
}

func startMonitor(ctx context.Context, rdb redis.UniversalClient) (*monitor, error) {
	m := &monitor{rdb: rdb, old: map[string]string{}, slowThreshold: 5 * time.Millisecond, latencyThreshold: 10 * time.Millisecond}
	set := map[string]string{
		"slowlog-log-slower-than":   strconv.FormatInt(m.slowThreshold.Microseconds(), 10),
		"slowlog-max-len":           "10000",
		"latency-monitor-threshold": strconv.FormatInt(m.latencyThreshold.Milliseconds(), 10),
	}
	for k, v := range set {
		old, err := rdb.ConfigGet(ctx, k).Result()
		if err != nil {
			return nil, fmt.Errorf("bench: CONFIG GET %s: %w", k, err)
		}
		m.old[k] = old[k]
		if err := rdb.ConfigSet(ctx, k, v).Err(); err != nil {
			return nil, fmt.Errorf("bench: CONFIG SET %s: %w", k, err)
		}
	}
	if err := m.reset(ctx); err != nil {
		return nil, err
	}
	return m, nil
}

func (m *monitor) reset(ctx context.Context) error {
	if err := m.rdb.SlowLogReset(ctx).Err(); err != nil {
		return fmt.Errorf("bench: SLOWLOG RESET: %w", err)
	}
	if err := m.rdb.Do(ctx, "LATENCY", "RESET").Err(); err != nil {
		return fmt.Errorf("bench: LATENCY RESET: %w", err)
	}
	return nil
}

func (m *monitor) restore(ctx context.Context) {
	for k, v := range m.old {
		_ = m.rdb.ConfigSet(ctx, k, v).Err()
	}
}

// collect records the phase's slowest command and latency spikes, then resets both.
func (m *monitor) collect(ctx context.Context, phase string, res *BenchResult) error {
	logs, err := m.rdb.SlowLogGet(ctx, -1).Result()
	if err != nil {
		return fmt.Errorf("bench: SLOWLOG GET: %w", err)
	}
	for _, l := range logs {
		if ms(l.Duration) > res.Slowest[phase].TookMS {
			args := l.Args
			if len(args) > 3 {
				args = args[:3]
			}
			cmd := strings.Join(args, " ")
			if len(cmd) > 80 {
				cmd = cmd[:80] + "…"
			}
			res.Slowest[phase] = SlowCommand{Command: cmd, TookMS: ms(l.Duration)}
		}
	}
	lat, err := m.rdb.Do(ctx, "LATENCY", "LATEST").Slice()
	if err != nil {
		return fmt.Errorf("bench: LATENCY LATEST: %w", err)
	}
	for _, e := range lat {
		ev, ok := e.([]any)
		if !ok || len(ev) < 4 {
			continue
		}
		name, _ := ev[0].(string)
		worst, _ := ev[3].(int64)
		k := phase + ":" + name
		if d := float64(worst); d > res.Latency[k] {
			res.Latency[k] = d
		}
	}
	return m.reset(ctx)
}
