package dispatcher

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"
	"unicode/utf8"
)

// Job is one send job on herald.outbound: a (campaign, contact) pair routed to a sender.
// It is small on purpose; everything else is looked up (and cached) by the worker.
type Job struct {
	Campaign  string
	Contact   uint32
	Sender    string
	Attempt   uint8
	NotBefore time.Time // zero: now
	// Stage 1 is a request to fall back to the next channel of the campaign's policy
	// (failover.go): From is the channel the send leaves, Reason the trigger (a Fallback…
	// constant), Code the provider code of a permanent failure. Stage 0 is every other job.
	Stage  uint8
	From   string
	Reason string
	Code   int
}

const (
	jobVersion         = 1
	jobVersionFallback = 2 // a stage-1 job: the version-1 fields, then stage, from, reason, code
)

// Marshal encodes j compactly: version, then length-prefixed strings and varints.
func (j Job) Marshal() []byte {
	b := make([]byte, 0, 16+len(j.Campaign)+len(j.Sender))
	v := byte(jobVersion)
	if j.Stage > 0 {
		v = jobVersionFallback
	}
	b = append(b, v)
	b = binary.AppendUvarint(b, uint64(len(j.Campaign)))
	b = append(b, j.Campaign...)
	b = binary.AppendUvarint(b, uint64(j.Contact))
	b = binary.AppendUvarint(b, uint64(len(j.Sender)))
	b = append(b, j.Sender...)
	b = append(b, j.Attempt)
	var nb int64
	if !j.NotBefore.IsZero() {
		nb = j.NotBefore.UnixMilli()
	}
	b = binary.AppendVarint(b, nb)
	if j.Stage > 0 {
		b = append(b, j.Stage)
		b = binary.AppendUvarint(b, uint64(len(j.From)))
		b = append(b, j.From...)
		b = binary.AppendUvarint(b, uint64(len(j.Reason)))
		b = append(b, j.Reason...)
		b = binary.AppendUvarint(b, uint64(max(j.Code, 0)))
	}
	return b
}

var errShortJob = errors.New("truncated")

// UnmarshalJob decodes a job, rejecting anything malformed.
func UnmarshalJob(b []byte) (Job, error) {
	var j Job
	if len(b) == 0 || b[0] != jobVersion && b[0] != jobVersionFallback {
		return j, fmt.Errorf("decode job: unknown version")
	}
	version := b[0]
	b = b[1:]
	str := func() (string, error) {
		n, k := binary.Uvarint(b)
		if k <= 0 || n > uint64(len(b)-k) || n > 255 {
			return "", errShortJob
		}
		s := string(b[k : k+int(n)])
		b = b[k+int(n):]
		if !utf8.ValidString(s) {
			return "", errors.New("invalid UTF-8")
		}
		return s, nil
	}
	var err error
	if j.Campaign, err = str(); err != nil || j.Campaign == "" {
		return j, fmt.Errorf("decode job: campaign: %v", orEmpty(err))
	}
	c, k := binary.Uvarint(b)
	if k <= 0 || c == 0 || c > 1<<32-1 {
		return j, fmt.Errorf("decode job: bad contact id")
	}
	j.Contact = uint32(c)
	b = b[k:]
	if j.Sender, err = str(); err != nil || j.Sender == "" {
		return j, fmt.Errorf("decode job: sender: %v", orEmpty(err))
	}
	if len(b) < 1 {
		return j, fmt.Errorf("decode job: %w", errShortJob)
	}
	j.Attempt = b[0]
	b = b[1:]
	nb, k := binary.Varint(b)
	if k <= 0 || version == jobVersion && k != len(b) {
		return j, fmt.Errorf("decode job: bad not-before or trailing bytes")
	}
	if nb != 0 {
		j.NotBefore = time.UnixMilli(nb)
	}
	if version == jobVersion {
		return j, nil
	}
	b = b[k:]
	if len(b) < 1 || b[0] == 0 {
		return j, fmt.Errorf("decode job: bad stage")
	}
	j.Stage = b[0]
	b = b[1:]
	if j.From, err = str(); err != nil {
		return j, fmt.Errorf("decode job: from: %v", err)
	}
	if j.Reason, err = str(); err != nil {
		return j, fmt.Errorf("decode job: reason: %v", err)
	}
	code, k := binary.Uvarint(b)
	if k <= 0 || k != len(b) || code > 1<<31-1 {
		return j, fmt.Errorf("decode job: bad code or trailing bytes")
	}
	j.Code = int(code)
	return j, nil
}

func orEmpty(err error) error {
	if err == nil {
		return errors.New("empty")
	}
	return err
}
