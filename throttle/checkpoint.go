package throttle

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"hash"
	"os"
	"strconv"
	"strings"
	"time"
)

// CheckpointVersion is the first line of every checkpoint's digest preimage.
const CheckpointVersion = "herald-ledger-checkpoint/v1"

// Checkpoint is a signed statement of the consent ledger's chain heads: "at At, these
// contacts' chains ended in these hashes after this many records". Each checkpoint lists
// the heads that moved since the one before it (Seq-1) and chains onto that one's digest
// (PrevDigest), so checkpoint N commits to every head of checkpoints 1..N: a contact's
// checkpointed head at N is its row in the latest checkpoint ≤ N that lists it.
//
// Digest is the hex SHA-256 of the preimage (every line ends in "\n"):
//
//	herald-ledger-checkpoint/v1
//	seq <Seq>
//	at <At in unix milliseconds>
//	prev <PrevDigest, empty for the first checkpoint>
//	<contact id>:<head hash>:<records>      one line per head, ascending contact id
//	heads <Heads, the number of head lines>
//
// Signature is the base64 Ed25519 signature of the 32 digest bytes by the writers' key
// (PublicKey, base64; KeyID, the hex of the first 8 bytes of its SHA-256).
type Checkpoint struct {
	ID         string    `json:"id"` // names the checkpoint's rows in storage; not signed
	Seq        uint64    `json:"seq"`
	At         time.Time `json:"at,omitzero"`
	PrevDigest string    `json:"prev_digest"`
	Heads      uint64    `json:"heads"`
	Digest     string    `json:"digest"`
	KeyID      string    `json:"key_id"`
	PublicKey  string    `json:"public_key"`
	Signature  string    `json:"signature"`
}

// CheckpointHead is one contact's chain as a checkpoint holds it: the hash of its last
// record (events.ConsentRecord.Hash) and how many records the chain had up to it.
type CheckpointHead struct {
	ContactID uint32 `json:"contact_id"`
	Head      string `json:"head"`
	Records   uint64 `json:"records"`
}

// CheckpointDigest computes a checkpoint's digest from its heads, given in ascending
// contact order, without holding them all.
type CheckpointDigest struct {
	h    hash.Hash
	n    uint64
	last uint32
	buf  []byte
	err  error
}

// NewCheckpointDigest starts the digest of the checkpoint seq taken at at, chained onto prev.
func NewCheckpointDigest(seq uint64, at time.Time, prev string) *CheckpointDigest {
	d := &CheckpointDigest{h: sha256.New()}
	fmt.Fprintf(d.h, "%s\nseq %d\nat %d\nprev %s\n", CheckpointVersion, seq, at.UnixMilli(), prev)
	return d
}

// Add adds the next head. Heads must come in strictly ascending contact order, each with
// a 64-digit lowercase hex hash and at least one record; the first head that does not is
// returned as the error of Add and of every later Sum.
func (d *CheckpointDigest) Add(h CheckpointHead) error {
	if d.err != nil {
		return d.err
	}
	switch {
	case h.ContactID == 0 || (d.n > 0 && h.ContactID <= d.last):
		d.err = fmt.Errorf("checkpoint head of contact %d: not in ascending contact order (after %d)", h.ContactID, d.last)
	case !isHash(h.Head):
		d.err = fmt.Errorf("checkpoint head of contact %d: %q is not a record hash (64 lowercase hex digits)", h.ContactID, h.Head)
	case h.Records == 0:
		d.err = fmt.Errorf("checkpoint head of contact %d: a chain has at least one record", h.ContactID)
	}
	if d.err != nil {
		return d.err
	}
	d.buf = strconv.AppendUint(d.buf[:0], uint64(h.ContactID), 10)
	d.buf = append(d.buf, ':')
	d.buf = append(d.buf, h.Head...)
	d.buf = append(d.buf, ':')
	d.buf = strconv.AppendUint(d.buf, h.Records, 10)
	d.buf = append(d.buf, '\n')
	d.h.Write(d.buf)
	d.n++
	d.last = h.ContactID
	return nil
}

// Sum ends the preimage with the number of heads and returns the hex digest and that number.
func (d *CheckpointDigest) Sum() (string, uint64, error) {
	if d.err != nil {
		return "", 0, d.err
	}
	fmt.Fprintf(d.h, "heads %d\n", d.n)
	return hex.EncodeToString(d.h.Sum(nil)), d.n, nil
}

// ComputeDigest returns the digest of cp over heads (in ascending contact order), and
// their number.
func (cp Checkpoint) ComputeDigest(heads []CheckpointHead) (string, uint64, error) {
	d := NewCheckpointDigest(cp.Seq, cp.At, cp.PrevDigest)
	for _, h := range heads {
		if err := d.Add(h); err != nil {
			return "", 0, err
		}
	}
	return d.Sum()
}

func isHash(s string) bool {
	if len(s) != 2*sha256.Size {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// Sign sets cp's key fields and its signature of cp.Digest.
func (cp *Checkpoint) Sign(key ed25519.PrivateKey) error {
	d, err := hex.DecodeString(cp.Digest)
	if err != nil || len(d) != sha256.Size {
		return fmt.Errorf("sign checkpoint %d: digest %q is not 64 hex digits", cp.Seq, cp.Digest)
	}
	pub := key.Public().(ed25519.PublicKey)
	cp.KeyID, cp.PublicKey = LedgerKeyID(pub), EncodeLedgerPublicKey(pub)
	cp.Signature = base64.StdEncoding.EncodeToString(ed25519.Sign(key, d))
	return nil
}

// Signature failures.
var (
	ErrUnknownKey   = errors.New("signed by a key that is not among the trusted public keys")
	ErrBadSignature = errors.New("signature does not verify")
)

// VerifySignature checks cp's signature of its digest with the trusted key whose id it
// names (ErrUnknownKey when none does, ErrBadSignature when the signature is wrong). The
// public key stored in cp is never trusted: only keys given here are.
func (cp Checkpoint) VerifySignature(trusted ...ed25519.PublicKey) error {
	var key ed25519.PublicKey
	for _, k := range trusted {
		if LedgerKeyID(k) == cp.KeyID {
			key = k
			break
		}
	}
	if key == nil {
		return fmt.Errorf("checkpoint %d: key %s: %w", cp.Seq, cp.KeyID, ErrUnknownKey)
	}
	d, err := hex.DecodeString(cp.Digest)
	sig, serr := base64.StdEncoding.DecodeString(cp.Signature)
	if err != nil || serr != nil || len(d) != sha256.Size || !ed25519.Verify(key, d, sig) {
		return fmt.Errorf("checkpoint %d: key %s: %w", cp.Seq, cp.KeyID, ErrBadSignature)
	}
	return nil
}

// LedgerKeyID names a public key: the hex of the first 8 bytes of its SHA-256.
func LedgerKeyID(pub ed25519.PublicKey) string {
	s := sha256.Sum256(pub)
	return hex.EncodeToString(s[:8])
}

// EncodeLedgerPublicKey returns pub in base64, as checkpoints and `herald ledger keygen` print it.
func EncodeLedgerPublicKey(pub ed25519.PublicKey) string {
	return base64.StdEncoding.EncodeToString(pub)
}

// EncodeLedgerKey returns the base64 seed of key, the form ParseLedgerKey reads.
func EncodeLedgerKey(key ed25519.PrivateKey) string {
	return base64.StdEncoding.EncodeToString(key.Seed())
}

// GenerateLedgerKey returns a new Ed25519 signing key for checkpoints.
func GenerateLedgerKey() (ed25519.PrivateKey, error) {
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate ledger key: %w", err)
	}
	return key, nil
}

// ParseLedgerKey reads a checkpoint signing key: s is a file holding the key, or the key
// itself, as a base64 or hex Ed25519 seed (32 bytes), or a PEM PKCS #8 private key
// (`openssl genpkey -algorithm ed25519`).
func ParseLedgerKey(s string) (ed25519.PrivateKey, error) {
	v, src, err := keyText(s)
	if err != nil {
		return nil, err
	}
	if b, _ := pem.Decode([]byte(v)); b != nil {
		k, err := x509.ParsePKCS8PrivateKey(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("ledger signing key %s: %w", src, err)
		}
		key, ok := k.(ed25519.PrivateKey)
		if !ok {
			return nil, fmt.Errorf("ledger signing key %s: a %T, not an Ed25519 key", src, k)
		}
		return key, nil
	}
	b := decodeKeyBytes(v)
	switch len(b) {
	case ed25519.SeedSize:
		return ed25519.NewKeyFromSeed(b), nil
	case ed25519.PrivateKeySize:
		key := ed25519.NewKeyFromSeed(b[:ed25519.SeedSize])
		if string(key) != string(b) {
			return nil, fmt.Errorf("ledger signing key %s: its public half does not match its seed", src)
		}
		return key, nil
	}
	return nil, fmt.Errorf("ledger signing key %s: want a base64 or hex Ed25519 seed of 32 bytes or a PEM private key (`herald ledger keygen` makes one)", src)
}

// ParseLedgerPublicKey reads a checkpoint verification key: s is a file holding it, or the
// key itself, as base64 or hex (32 bytes), or a PEM public key (`openssl pkey -pubout`).
func ParseLedgerPublicKey(s string) (ed25519.PublicKey, error) {
	v, src, err := keyText(s)
	if err != nil {
		return nil, err
	}
	if b, _ := pem.Decode([]byte(v)); b != nil {
		k, err := x509.ParsePKIXPublicKey(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("ledger public key %s: %w", src, err)
		}
		pub, ok := k.(ed25519.PublicKey)
		if !ok {
			return nil, fmt.Errorf("ledger public key %s: a %T, not an Ed25519 key", src, k)
		}
		return pub, nil
	}
	if b := decodeKeyBytes(v); len(b) == ed25519.PublicKeySize {
		return ed25519.PublicKey(b), nil
	}
	return nil, fmt.Errorf("ledger public key %s: want 32 bytes in base64 or hex, or a PEM public key (`herald ledger keygen` prints one)", src)
}

// keyText returns the key text of s: a file's contents when s names a file, else s.
func keyText(s string) (text, source string, err error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return "", "", errors.New("ledger key: empty")
	}
	if st, err := os.Stat(s); err == nil && st.Mode().IsRegular() {
		b, err := os.ReadFile(s)
		if err != nil {
			return "", "", fmt.Errorf("ledger key: %w", err)
		}
		return strings.TrimSpace(string(b)), "in " + s, nil
	}
	if strings.ContainsAny(s, `/\`) && !strings.Contains(s, "-----BEGIN") && decodeKeyBytes(s) == nil {
		return "", "", fmt.Errorf("ledger key: no file %s", s)
	}
	return s, "(given inline)", nil
}

func decodeKeyBytes(v string) []byte {
	if b, err := hex.DecodeString(v); err == nil && (len(b) == 32 || len(b) == 64) {
		return b
	}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if b, err := enc.DecodeString(v); err == nil {
			return b
		}
	}
	return nil
}
