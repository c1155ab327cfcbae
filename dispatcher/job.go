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
}

const jobVersion = 1

// Marshal encodes j compactly: version, then length-prefixed strings and varints.
func (j Job) Marshal() []byte {
	b := make([]byte, 0, 16+len(j.Campaign)+len(j.Sender))
	b = append(b, jobVersion)
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
	return b
}

var errShortJob = errors.New("truncated")

// UnmarshalJob decodes a job, rejecting anything malformed.
func UnmarshalJob(b []byte) (Job, error) {
	var j Job
	if len(b) == 0 || b[0] != jobVersion {
		return j, fmt.Errorf("decode job: unknown version")
	}
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
	if k <= 0 || k != len(b) {
		return j, fmt.Errorf("decode job: bad not-before or trailing bytes")
	}
	if nb != 0 {
		j.NotBefore = time.UnixMilli(nb)
	}
	return j, nil
}

func orEmpty(err error) error {
	if err == nil {
		return errors.New("empty")
	}
	return err
}
