package analytics

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/herald-dev/herald/internal/events"
	"github.com/herald-dev/herald/throttle"
)

// The consent ledger's checkpoints (throttle.Checkpoint), one row each, and the chain
// heads each lists. The scheduler's leader writes them directly (heads first, the signed
// header last, so a checkpoint whose header is visible has all its heads). Rows whose
// checkpoint_id no header names are a checkpoint that failed half-way: the audit skips them.
const createLedgerCheckpoints = `CREATE TABLE IF NOT EXISTS ledger_checkpoints (
    checkpoint_id String,
    seq           UInt64,
    at            DateTime,
    at_ms         UInt64,
    prev_digest   String,
    heads         UInt64,
    digest        String,
    key_id        String,
    public_key    String,
    signature     String,
    inserted_at   DateTime DEFAULT now()
) ENGINE = MergeTree()
ORDER BY (seq, checkpoint_id)`

const createLedgerHeads = `CREATE TABLE IF NOT EXISTS ledger_heads (
    checkpoint_id String,
    seq           UInt64,
    contact_id    UInt32,
    head          String,
    records       UInt64,
    inserted_at   DateTime DEFAULT now()
) ENGINE = MergeTree()
ORDER BY (seq, contact_id)`

// CheckpointStore keeps the consent ledger's checkpoints in ClickHouse.
type CheckpointStore struct{ conn driver.Conn }

var _ throttle.CheckpointStore = (*CheckpointStore)(nil)

// NewCheckpointStore returns the store on conn (its database holds the migrated schema).
func NewCheckpointStore(conn driver.Conn) *CheckpointStore { return &CheckpointStore{conn: conn} }

const checkpointSelect = `SELECT DISTINCT checkpoint_id, seq, at_ms, prev_digest, heads, digest, key_id, public_key, signature
FROM ledger_checkpoints`

func scanCheckpoint(rows driver.Rows) (throttle.Checkpoint, error) {
	var (
		cp   throttle.Checkpoint
		atMS uint64
	)
	err := rows.Scan(&cp.ID, &cp.Seq, &atMS, &cp.PrevDigest, &cp.Heads, &cp.Digest, &cp.KeyID, &cp.PublicKey, &cp.Signature)
	cp.At = msTime(atMS)
	return cp, err
}

// LastCheckpoint returns the checkpoint with the highest seq (the latest of several).
func (s *CheckpointStore) LastCheckpoint(ctx context.Context) (throttle.Checkpoint, bool, error) {
	rows, err := s.conn.Query(ctx, checkpointSelect+" ORDER BY seq DESC, at_ms DESC, checkpoint_id DESC LIMIT 1")
	if err != nil {
		return throttle.Checkpoint{}, false, fmt.Errorf("last ledger checkpoint: %w", err)
	}
	defer rows.Close()
	if !rows.Next() {
		return throttle.Checkpoint{}, false, rows.Err()
	}
	cp, err := scanCheckpoint(rows)
	if err != nil {
		return cp, false, fmt.Errorf("last ledger checkpoint: %w", err)
	}
	return cp, true, nil
}

// SaveHeads stores heads of checkpoint cp.
func (s *CheckpointStore) SaveHeads(ctx context.Context, cp throttle.Checkpoint, heads []throttle.CheckpointHead) error {
	ids, seqs := make([]string, len(heads)), make([]uint64, len(heads))
	contacts, hashes, records := make([]uint32, len(heads)), make([]string, len(heads)), make([]uint64, len(heads))
	for i, h := range heads {
		ids[i], seqs[i], contacts[i], hashes[i], records[i] = cp.ID, cp.Seq, h.ContactID, h.Head, h.Records
	}
	return insertColumns(ctx, s.conn, "ledger_heads", []string{"checkpoint_id", "seq", "contact_id", "head", "records"},
		[]any{ids, seqs, contacts, hashes, records})
}

// SaveCheckpoint stores the signed checkpoint.
func (s *CheckpointStore) SaveCheckpoint(ctx context.Context, cp throttle.Checkpoint) error {
	return insertColumns(ctx, s.conn, "ledger_checkpoints",
		[]string{"checkpoint_id", "seq", "at", "at_ms", "prev_digest", "heads", "digest", "key_id", "public_key", "signature"},
		[]any{[]string{cp.ID}, []uint64{cp.Seq}, []time.Time{cp.At.UTC()}, []uint64{uint64(cp.At.UnixMilli())},
			[]string{cp.PrevDigest}, []uint64{cp.Heads}, []string{cp.Digest}, []string{cp.KeyID}, []string{cp.PublicKey},
			[]string{cp.Signature}})
}

// Checkpoints returns every stored checkpoint, by seq. A header stored twice is returned
// once; copies that differ in any field are all returned.
func Checkpoints(ctx context.Context, conn driver.Conn) ([]throttle.Checkpoint, error) {
	rows, err := conn.Query(ctx, checkpointSelect+" ORDER BY seq, at_ms, checkpoint_id")
	if err != nil {
		return nil, fmt.Errorf("ledger checkpoints: %w", err)
	}
	defer rows.Close()
	var out []throttle.Checkpoint
	for rows.Next() {
		cp, err := scanCheckpoint(rows)
		if err != nil {
			return nil, fmt.Errorf("ledger checkpoints: %w", err)
		}
		out = append(out, cp)
	}
	return out, rows.Err()
}

// CheckpointHeads streams the heads stored for checkpoint cp to fn in ascending contact
// order. A row stored twice is given once; copies that differ are all given.
func CheckpointHeads(ctx context.Context, conn driver.Conn, cp throttle.Checkpoint, fn func(throttle.CheckpointHead) error) error {
	rows, err := conn.Query(ctx, `SELECT contact_id, head, records FROM ledger_heads
WHERE seq = ? AND checkpoint_id = ? ORDER BY contact_id, head, records`, cp.Seq, cp.ID)
	if err != nil {
		return fmt.Errorf("heads of ledger checkpoint %d: %w", cp.Seq, err)
	}
	defer rows.Close()
	var prev throttle.CheckpointHead
	for first := true; rows.Next(); first = false {
		var h throttle.CheckpointHead
		if err := rows.Scan(&h.ContactID, &h.Head, &h.Records); err != nil {
			return fmt.Errorf("heads of ledger checkpoint %d: %w", cp.Seq, err)
		}
		if !first && h == prev {
			continue
		}
		prev = h
		if err := fn(h); err != nil {
			return err
		}
	}
	return rows.Err()
}

// Checkpoint problems.
const (
	CheckpointBadSignature = "signature" // no trusted key verifies its signature
	CheckpointBadDigest    = "digest"    // its stored heads or fields do not hash to its digest
	CheckpointBadChain     = "chain"     // the checkpoint before it is missing or does not verify
	CheckpointStale        = "stale"     // the latest checkpoint is older than allowed
	CheckpointNone         = "none"      // there is no checkpoint at all
)

// CheckpointFinding is one problem of one checkpoint.
type CheckpointFinding struct {
	CheckpointID string    `json:"checkpoint_id,omitempty"`
	Seq          uint64    `json:"seq,omitempty"`
	At           time.Time `json:"at,omitzero"`
	KeyID        string    `json:"key_id,omitempty"`
	Problem      string    `json:"problem"`
	Detail       string    `json:"detail"`
}

// verifyCheckpoint checks cp's signature with the trusted keys and recomputes its digest
// from its stored heads.
func verifyCheckpoint(ctx context.Context, conn driver.Conn, cp throttle.Checkpoint, keys []ed25519.PublicKey) ([]CheckpointFinding, error) {
	var out []CheckpointFinding
	finding := func(problem, detail string) {
		out = append(out, CheckpointFinding{CheckpointID: cp.ID, Seq: cp.Seq, At: cp.At, KeyID: cp.KeyID, Problem: problem, Detail: detail})
	}
	if err := cp.VerifySignature(keys...); err != nil {
		finding(CheckpointBadSignature, err.Error())
	}
	d := throttle.NewCheckpointDigest(cp.Seq, cp.At, cp.PrevDigest)
	var bad error
	err := CheckpointHeads(ctx, conn, cp, func(h throttle.CheckpointHead) error {
		if bad == nil {
			bad = d.Add(h)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	digest, n, err := d.Sum()
	switch {
	case bad != nil:
		finding(CheckpointBadDigest, fmt.Sprintf("its stored heads are not a checkpoint's (%v): heads were altered or added", bad))
	case digest != cp.Digest:
		finding(CheckpointBadDigest, fmt.Sprintf("its fields and %d stored heads hash to %s, not to its digest %s (it says %d heads): heads or fields were altered, added or removed",
			n, short(digest), short(cp.Digest), cp.Heads))
	}
	return out, nil
}

func short(h string) string {
	if len(h) > 12 {
		return h[:12]
	}
	return h
}

// Chain statuses against the checkpoints, from the ledger audits.
const (
	LedgerOK                = "ok"                 // intact, and holds every checkpointed head at its position
	LedgerNotCheckpointed   = "not_checkpointed"   // intact, and no checkpoint lists it yet (new since the latest)
	LedgerChainBroken       = "chain_broken"       // a record does not link to the one before it (VerifyChain)
	LedgerRewritten         = "rewritten"          // the record at a checkpointed position is not the checkpointed head
	LedgerTruncated         = "truncated"          // fewer records than a checkpoint counted (records removed)
	LedgerCheckpointInvalid = "checkpoint_invalid" // listed by a checkpoint whose signature or digest fails
)

// Anchor is a contact's chain head as one checkpoint holds it.
type Anchor struct {
	CheckpointID string    `json:"checkpoint_id"`
	Seq          uint64    `json:"seq"`
	At           time.Time `json:"at,omitzero"`
	Head         string    `json:"head"`
	Records      uint64    `json:"records"`
}

// chainCheck is the verdict on one contact's chain.
type chainCheck struct {
	status  string
	detail  string
	against *Anchor // the checkpoint it fails against (rewritten, truncated, checkpoint_invalid)
}

// checkChain judges a contact's records (in ledger order, broken the index VerifyChain
// returned) against the heads trusted checkpoints hold for it (by seq) and those of
// checkpoints that do not verify. The chain must link, and hold each checkpointed head
// at its position: records after the latest checkpointed head are the ledger going on.
func checkChain(recs []events.ConsentRecord, broken int, trusted, untrusted []Anchor) chainCheck {
	for i := range trusted {
		a := &trusted[i]
		n := int(a.Records)
		where := fmt.Sprintf("checkpoint %d (%s)", a.Seq, a.At.UTC().Format(time.RFC3339))
		switch {
		case n > len(recs):
			return chainCheck{LedgerTruncated, fmt.Sprintf("%d records where %s counted %d ending in %s: records were removed",
				len(recs), where, n, short(a.Head)), a}
		case broken >= 0 && broken < n:
			return chainCheck{LedgerRewritten, fmt.Sprintf("record %d (%s) does not link to the one before it, within the %d records %s holds (ending in %s)",
				broken+1, recs[broken].ID, n, where, short(a.Head)), a}
		case recs[n-1].Hash != a.Head:
			return chainCheck{LedgerRewritten, fmt.Sprintf("record %d is %s (%s) where %s holds %s: records were altered, or removed or inserted and the rest re-sealed",
				n, short(recs[n-1].Hash), recs[n-1].ID, where, short(a.Head)), a}
		}
	}
	if broken >= 0 {
		return chainCheck{LedgerChainBroken, fmt.Sprintf("record %d (%s) does not link to the one before it", broken+1, recs[broken].ID), nil}
	}
	if len(untrusted) > 0 {
		a := &untrusted[len(untrusted)-1]
		return chainCheck{LedgerCheckpointInvalid, fmt.Sprintf("listed by checkpoint %d (%s), whose signature or digest fails",
			a.Seq, a.At.UTC().Format(time.RFC3339)), a}
	}
	if len(trusted) == 0 {
		return chainCheck{status: LedgerNotCheckpointed}
	}
	return chainCheck{status: LedgerOK}
}

// ledgerFailed reports whether a chain status fails an audit.
func ledgerFailed(status string) bool {
	return status != LedgerOK && status != LedgerNotCheckpointed
}

// LedgerAuditOptions configure AuditLedger.
type LedgerAuditOptions struct {
	Keys   []ed25519.PublicKey // trusted checkpoint keys; at least one
	MaxAge time.Duration       // the latest checkpoint must be younger than this; 0: not checked
	Now    time.Time           // for MaxAge; default time.Now()
	// Range is how many contact ids are read from ClickHouse at once (default 50000).
	Range uint32
}

// LedgerAudit is the consent ledger verified against its signed checkpoints.
type LedgerAudit struct {
	Checkpoints         int                  `json:"checkpoints"`
	CheckpointsVerified int                  `json:"checkpoints_verified"`
	Latest              *throttle.Checkpoint `json:"latest,omitempty"` // the latest checkpoint that verifies
	ChainsChecked       int                  `json:"chains_checked"`
	ChainsOK            int                  `json:"chains_ok"`
	// ChainsNotCheckpointed counts intact chains (among ChainsOK) no checkpoint lists yet.
	ChainsNotCheckpointed int                 `json:"chains_not_checkpointed"`
	CheckpointFailures    []CheckpointFinding `json:"checkpoint_failures"`
	ChainFailures         []ChainFinding      `json:"chain_failures"`
}

// ChainFinding is a contact whose chain fails the audit.
type ChainFinding struct {
	ContactID uint32 `json:"contact_id"`
	Status    string `json:"status"`
	Records   int    `json:"records"` // in consent_log
	// CheckpointSeq is the checkpoint it fails against (0 for a chain that does not link).
	CheckpointSeq uint64 `json:"checkpoint_seq,omitempty"`
	Detail        string `json:"detail"`
}

// OK reports whether every checkpoint and every chain passed.
func (a LedgerAudit) OK() bool { return len(a.CheckpointFailures) == 0 && len(a.ChainFailures) == 0 }

// AuditLedger verifies the consent ledger in ClickHouse against its checkpoints. Every
// checkpoint's signature must verify with a trusted key, its stored heads must hash to
// its digest, and it must chain onto a verified checkpoint of the seq before it (the
// first has seq 1). Then every contact's chain in consent_log must link (VerifyChain) and
// hold, at each position a verified checkpoint counted, the head that checkpoint holds:
// so a chain re-sealed after a record was removed, altered or inserted, or cut short, is
// named even though it links. Contacts listed by a checkpoint that fails are named too.
// Memory stays bounded: chains are read a range of contact ids at a time.
func AuditLedger(ctx context.Context, conn driver.Conn, o LedgerAuditOptions) (LedgerAudit, error) {
	a := LedgerAudit{CheckpointFailures: []CheckpointFinding{}, ChainFailures: []ChainFinding{}}
	if len(o.Keys) == 0 {
		return a, errors.New("audit ledger: no trusted public key")
	}
	if o.Now.IsZero() {
		o.Now = time.Now()
	}
	if o.Range == 0 {
		o.Range = 50000
	}
	cps, err := Checkpoints(ctx, conn)
	if err != nil {
		return a, fmt.Errorf("audit ledger: %w", err)
	}
	a.Checkpoints = len(cps)
	// Signature and digest of each; the IDs whose heads can be trusted.
	sound := map[string]bool{}   // checkpoint id -> a header with it verifies
	digests := map[string]bool{} // "seq digest" of the checkpoints that verify
	bad := make([]bool, len(cps))
	for i, cp := range cps {
		fs, err := verifyCheckpoint(ctx, conn, cp, o.Keys)
		if err != nil {
			return a, fmt.Errorf("audit ledger: %w", err)
		}
		if len(fs) > 0 {
			bad[i] = true
			a.CheckpointFailures = append(a.CheckpointFailures, fs...)
			continue
		}
		sound[cp.ID] = true
		digests[fmt.Sprint(cp.Seq, " ", cp.Digest)] = true
	}
	// Each chains onto a sound checkpoint of the seq before it.
	var latest *throttle.Checkpoint
	for i, cp := range cps {
		ok := (cp.Seq == 1 && cp.PrevDigest == "") || (cp.Seq > 1 && digests[fmt.Sprint(cp.Seq-1, " ", cp.PrevDigest)])
		if !ok {
			bad[i] = true
			detail := fmt.Sprintf("the checkpoint before it (seq %d, digest %s) is missing or does not verify: a checkpoint was removed or altered",
				cp.Seq-1, short(cp.PrevDigest))
			if cp.Seq <= 1 {
				detail = fmt.Sprintf("seq %d with previous digest %q: a chain of checkpoints starts at seq 1 with none", cp.Seq, short(cp.PrevDigest))
			}
			a.CheckpointFailures = append(a.CheckpointFailures, CheckpointFinding{CheckpointID: cp.ID, Seq: cp.Seq, At: cp.At,
				KeyID: cp.KeyID, Problem: CheckpointBadChain, Detail: detail})
		}
		if sound[cp.ID] && (latest == nil || cp.Seq > latest.Seq || (cp.Seq == latest.Seq && cp.At.After(latest.At))) {
			latest = &cps[i]
		}
	}
	for _, b := range bad {
		if !b {
			a.CheckpointsVerified++
		}
	}
	a.Latest = latest
	switch {
	case len(cps) == 0:
		a.CheckpointFailures = append(a.CheckpointFailures, CheckpointFinding{Problem: CheckpointNone,
			Detail: "no checkpoint is stored: nothing anchors the ledger (is HERALD_LEDGER_SIGNING_KEY set where the scheduler runs?)"})
	case latest != nil && o.MaxAge > 0 && o.Now.Sub(latest.At) > o.MaxAge:
		a.CheckpointFailures = append(a.CheckpointFailures, CheckpointFinding{CheckpointID: latest.ID, Seq: latest.Seq, At: latest.At,
			KeyID: latest.KeyID, Problem: CheckpointStale, Detail: fmt.Sprintf("the latest checkpoint that verifies is %s old (allowed: %s): later checkpoints were removed, or none were taken",
				o.Now.Sub(latest.At).Round(time.Second), o.MaxAge)})
	}
	at := map[string]time.Time{}
	for _, cp := range cps {
		at[cp.ID] = cp.At
	}

	// Every chain, a range of contact ids at a time.
	var hi uint64
	if err := conn.QueryRow(ctx, `SELECT toUInt64(greatest((SELECT max(contact_id) FROM consent_log), (SELECT max(contact_id) FROM ledger_heads)))`).Scan(&hi); err != nil {
		return a, fmt.Errorf("audit ledger: %w", err)
	}
	for lo := uint64(0); lo <= hi; lo += uint64(o.Range) {
		recs, err := consentRange(ctx, conn, lo, lo+uint64(o.Range))
		if err != nil {
			return a, fmt.Errorf("audit ledger: %w", err)
		}
		anchors, err := anchorRange(ctx, conn, lo, lo+uint64(o.Range), at)
		if err != nil {
			return a, fmt.Errorf("audit ledger: %w", err)
		}
		contacts := make([]uint32, 0, len(recs)+len(anchors))
		for c := range recs {
			contacts = append(contacts, c)
		}
		for c := range anchors {
			if _, ok := recs[c]; !ok {
				contacts = append(contacts, c)
			}
		}
		sort.Slice(contacts, func(i, j int) bool { return contacts[i] < contacts[j] })
		for _, c := range contacts {
			chain := chainOrder(recs[c])
			trusted, untrusted := splitAnchors(anchors[c], sound)
			v := checkChain(chain, events.VerifyChain(chain), trusted, untrusted)
			a.ChainsChecked++
			if !ledgerFailed(v.status) {
				a.ChainsOK++
				if v.status == LedgerNotCheckpointed {
					a.ChainsNotCheckpointed++
				}
				continue
			}
			f := ChainFinding{ContactID: c, Status: v.status, Records: len(chain), Detail: v.detail}
			if v.against != nil {
				f.CheckpointSeq = v.against.Seq
			}
			a.ChainFailures = append(a.ChainFailures, f)
		}
	}
	return a, nil
}

// consentRange returns the distinct consent_log records of contacts in [lo, hi), by contact.
func consentRange(ctx context.Context, conn driver.Conn, lo, hi uint64) (map[uint32][]events.ConsentRecord, error) {
	rows, err := conn.Query(ctx, `SELECT DISTINCT `+consentRecordColumns+` FROM consent_log
WHERE contact_id >= ? AND contact_id < ?`, lo, hi)
	if err != nil {
		return nil, fmt.Errorf("consent records of contacts %d–%d: %w", lo, hi-1, err)
	}
	defer rows.Close()
	out := map[uint32][]events.ConsentRecord{}
	for rows.Next() {
		r, err := scanConsentRecord(rows)
		if err != nil {
			return nil, fmt.Errorf("consent records of contacts %d–%d: %w", lo, hi-1, err)
		}
		out[r.ContactID] = append(out[r.ContactID], r)
	}
	return out, rows.Err()
}

// anchorRange returns the checkpointed heads of contacts in [lo, hi), by contact and seq,
// leaving out rows of checkpoints with no header (at: checkpoint id -> time).
func anchorRange(ctx context.Context, conn driver.Conn, lo, hi uint64, at map[string]time.Time) (map[uint32][]Anchor, error) {
	rows, err := conn.Query(ctx, `SELECT DISTINCT contact_id, checkpoint_id, seq, head, records FROM ledger_heads
WHERE contact_id >= ? AND contact_id < ? ORDER BY contact_id, seq, checkpoint_id`, lo, hi)
	if err != nil {
		return nil, fmt.Errorf("checkpointed heads of contacts %d–%d: %w", lo, hi-1, err)
	}
	defer rows.Close()
	out := map[uint32][]Anchor{}
	for rows.Next() {
		var (
			c  uint32
			an Anchor
		)
		if err := rows.Scan(&c, &an.CheckpointID, &an.Seq, &an.Head, &an.Records); err != nil {
			return nil, fmt.Errorf("checkpointed heads of contacts %d–%d: %w", lo, hi-1, err)
		}
		t, ok := at[an.CheckpointID]
		if !ok {
			continue // a checkpoint that stopped before its header
		}
		an.At = t
		out[c] = append(out[c], an)
	}
	return out, rows.Err()
}

// splitAnchors separates the heads of checkpoints that verify from the others.
func splitAnchors(all []Anchor, sound map[string]bool) (trusted, untrusted []Anchor) {
	for _, an := range all {
		if sound[an.CheckpointID] {
			trusted = append(trusted, an)
		} else {
			untrusted = append(untrusted, an)
		}
	}
	return trusted, untrusted
}

// ContactLedger is a contact's chain judged against the checkpoints that list it.
type ContactLedger struct {
	Status string `json:"status"` // one of the Ledger* statuses
	Detail string `json:"detail,omitempty"`
	// Checkpoint is the latest checkpoint listing the contact, with the head it holds.
	Checkpoint *Anchor `json:"checkpoint,omitempty"`
	// SignaturesChecked: the checkpoints listing the contact were verified (signature
	// and digest) with a trusted public key; without one, every checkpoint is taken as
	// it is stored, and a failure says only that the chain and the table disagree.
	SignaturesChecked bool `json:"signatures_checked"`
}

// Failed reports whether the contact's chain fails against its checkpoints.
func (l ContactLedger) Failed() bool { return ledgerFailed(l.Status) }

// contactLedger judges a contact's chain (ledger order; broken from VerifyChain) against
// the checkpoints that list it, verifying those with keys when there are any.
func contactLedger(ctx context.Context, conn driver.Conn, contact uint32, recs []events.ConsentRecord, broken int,
	keys []ed25519.PublicKey) (ContactLedger, error) {
	l := ContactLedger{SignaturesChecked: len(keys) > 0}
	cps, err := Checkpoints(ctx, conn)
	if err != nil {
		return l, err
	}
	byID := map[string][]throttle.Checkpoint{}
	at := map[string]time.Time{}
	for _, cp := range cps {
		byID[cp.ID] = append(byID[cp.ID], cp)
		at[cp.ID] = cp.At
	}
	anchors, err := anchorRange(ctx, conn, uint64(contact), uint64(contact)+1, at)
	if err != nil {
		return l, err
	}
	sound := map[string]bool{}
	for _, an := range anchors[contact] {
		if _, done := sound[an.CheckpointID]; done {
			continue
		}
		sound[an.CheckpointID] = !l.SignaturesChecked
		for _, cp := range byID[an.CheckpointID] {
			if !l.SignaturesChecked {
				break
			}
			fs, err := verifyCheckpoint(ctx, conn, cp, keys)
			if err != nil {
				return l, err
			}
			if len(fs) == 0 {
				sound[an.CheckpointID] = true
			}
		}
	}
	trusted, untrusted := splitAnchors(anchors[contact], sound)
	v := checkChain(recs, broken, trusted, untrusted)
	l.Status, l.Detail = v.status, v.detail
	if all := anchors[contact]; len(all) > 0 {
		latest := all[len(all)-1]
		l.Checkpoint = &latest
	}
	return l, nil
}
