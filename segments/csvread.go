package segments

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
)

// CSV reading. encoding/csv is not used because of what it does with a messy file: a
// stray quote makes it read on to the next quote in the file, swallowing the rows in
// between into one bad record. This reader keeps physical line numbers, accepts a
// quoted field over several lines, and when such a record turns out malformed rejects
// only its first line and reads the following lines again as rows of their own.

const (
	maxLineBytes   = 1 << 20 // a longer physical line is rejected
	maxRecordBytes = 1 << 20 // a quoted field spanning lines may not grow beyond this…
	maxRecordLines = 1000    // …or this many lines
)

// physLine is one line of the file without its line ending.
type physLine struct {
	n       int // 1-based physical line number
	b       []byte
	tooLong bool
}

// lineSource yields physical lines, first any pushed back.
type lineSource struct {
	br      *bufio.Reader
	n       int
	pending []physLine // pushed back, in order
	buf     []byte
	bytes   int64 // bytes consumed from the reader
}

func newLineSource(r io.Reader) *lineSource {
	return &lineSource{br: bufio.NewReaderSize(r, 64<<10)}
}

// next returns the next line; its bytes are valid until the following call. It
// returns io.EOF after the last line.
func (s *lineSource) next() (physLine, error) {
	if len(s.pending) > 0 {
		l := s.pending[0]
		s.pending = s.pending[1:]
		return l, nil
	}
	s.buf = s.buf[:0]
	tooLong := false
	for {
		chunk, err := s.br.ReadSlice('\n')
		s.bytes += int64(len(chunk))
		if !tooLong {
			if len(s.buf)+len(chunk) > maxLineBytes+2 {
				tooLong = true
				s.buf = s.buf[:0]
			} else {
				s.buf = append(s.buf, chunk...)
			}
		}
		if err == bufio.ErrBufferFull {
			continue
		}
		if err != nil && err != io.EOF {
			return physLine{}, fmt.Errorf("read line %d: %w", s.n+1, err)
		}
		if err == io.EOF && len(chunk) == 0 && len(s.buf) == 0 && !tooLong {
			return physLine{}, io.EOF
		}
		break
	}
	s.n++
	b := s.buf
	if n := len(b); n > 0 && b[n-1] == '\n' {
		b = b[:n-1]
	}
	if n := len(b); n > 0 && b[n-1] == '\r' {
		b = b[:n-1]
	}
	return physLine{n: s.n, b: b, tooLong: tooLong}, nil
}

// unread pushes lines back to be read again, before anything else.
func (s *lineSource) unread(ls []physLine) {
	s.pending = append(append([]physLine(nil), ls...), s.pending...)
}

// record is one CSV record: its fields, or why it is malformed.
type record struct {
	line   int // physical line where the record starts
	fields []string
	bad    string // reason, when malformed
}

// recParser parses one record fed line by line. Quotes open a quoted field only at the
// start of a field; a quote inside an unquoted field is kept as a character (5" screen).
type recParser struct {
	delim  byte
	fields []string
	rec    []byte // the record's field values, back to back
	ends   []int  // where each field ends in rec
	state  int
	bad    string
}

const (
	stFieldStart = iota
	stUnquoted
	stQuoted
	stQuoteSeen // a quote inside a quoted field: closing it, or the first of ""
	stAfterClose
)

func (p *recParser) reset() {
	p.fields = nil
	p.rec = p.rec[:0]
	p.ends = p.ends[:0]
	p.state = stFieldStart
	p.bad = ""
}

func (p *recParser) emit() {
	p.ends = append(p.ends, len(p.rec))
	p.state = stFieldStart
}

// finish makes the fields of a complete record: one string, sliced.
func (p *recParser) finish() {
	all := string(p.rec)
	p.fields = make([]string, len(p.ends))
	start := 0
	for i, end := range p.ends {
		p.fields[i] = all[start:end]
		start = end
	}
}

// feed parses one physical line of the record. It returns true when the record is
// complete (possibly malformed, see p.bad), false when a quoted field continues on the
// next line.
func (p *recParser) feed(line []byte) bool {
	if p.state == stQuoted {
		p.rec = append(p.rec, '\n')
	}
	for i := 0; i < len(line); i++ {
		c := line[i]
		switch p.state {
		case stFieldStart:
			switch c {
			case '"':
				p.state = stQuoted
			case p.delim:
				p.emit()
			default:
				p.rec = append(p.rec, c)
				p.state = stUnquoted
			}
		case stUnquoted:
			if c == p.delim {
				p.emit()
			} else {
				p.rec = append(p.rec, c)
			}
		case stQuoted:
			if c == '"' {
				p.state = stQuoteSeen
			} else {
				// Copy the run up to the next quote at once.
				j := bytes.IndexByte(line[i:], '"')
				if j < 0 {
					j = len(line) - i
				}
				p.rec = append(p.rec, line[i:i+j]...)
				i += j - 1
			}
		case stQuoteSeen:
			switch c {
			case '"':
				p.rec = append(p.rec, '"')
				p.state = stQuoted
			case p.delim:
				p.emit()
			case ' ', '\t':
				p.state = stAfterClose
			default:
				p.bad = fmt.Sprintf("malformed quoted field: %q after a closing quote (double a quote inside a quoted field: \"\")", c)
				return true
			}
		case stAfterClose:
			switch c {
			case p.delim:
				p.emit()
			case ' ', '\t':
			default:
				p.bad = fmt.Sprintf("malformed quoted field: %q after a closing quote (double a quote inside a quoted field: \"\")", c)
				return true
			}
		}
	}
	if p.state == stQuoted {
		return false
	}
	p.emit()
	p.finish()
	return true
}

// recordReader splits a CSV stream into records.
type recordReader struct {
	src  *lineSource
	p    recParser
	held []physLine
}

var errUnterminated = errors.New("unterminated quoted field")

// read returns the next record, or io.EOF.
func (r *recordReader) read() (record, error) {
	first, err := r.src.next()
	if err != nil {
		return record{}, err
	}
	if first.tooLong {
		return record{line: first.n, bad: fmt.Sprintf("line too long (over %d bytes)", maxLineBytes)}, nil
	}
	r.p.reset()
	if r.p.feed(first.b) {
		return record{line: first.n, fields: r.p.fields, bad: r.p.bad}, nil
	}
	// A quoted field goes on: hold copies of the lines, to read them again as rows of
	// their own if the record turns out malformed.
	r.held = append(r.held[:0], physLine{n: first.n, b: bytes.Clone(first.b)})
	size := len(first.b)
	for {
		l, err := r.src.next()
		if err == io.EOF {
			return r.giveUp(errUnterminated.Error() + " (a quote opened here is never closed)")
		}
		if err != nil {
			return record{}, err
		}
		if l.tooLong {
			r.held = append(r.held, l)
			return r.giveUp(errUnterminated.Error() + fmt.Sprintf(" (it runs into line %d, which is too long)", l.n))
		}
		r.held = append(r.held, physLine{n: l.n, b: bytes.Clone(l.b)})
		size += len(l.b) + 1
		if len(r.held) > maxRecordLines || size > maxRecordBytes {
			return r.giveUp(errUnterminated.Error() + fmt.Sprintf(" (a quote opened here is not closed within %d lines)", maxRecordLines))
		}
		if r.p.feed(l.b) {
			if r.p.bad != "" {
				return r.giveUp(r.p.bad)
			}
			return record{line: first.n, fields: r.p.fields}, nil
		}
	}
}

// giveUp rejects the first held line and pushes the others back to be read again.
func (r *recordReader) giveUp(reason string) (record, error) {
	r.src.unread(r.held[1:])
	return record{line: r.held[0].n, bad: reason}, nil
}

// detectDelimiter picks ",", ";" or tab: whichever occurs most often outside quotes in
// the header line (comma on a tie).
func detectDelimiter(header []byte) byte {
	var n [3]int
	in := false
	for _, c := range header {
		switch c {
		case '"':
			in = !in
		case ',':
			if !in {
				n[0]++
			}
		case ';':
			if !in {
				n[1]++
			}
		case '\t':
			if !in {
				n[2]++
			}
		}
	}
	d, best := byte(','), n[0]
	if n[1] > best {
		d, best = ';', n[1]
	}
	if n[2] > best {
		d = '\t'
	}
	return d
}

// splitLine parses one complete single-line record; it is the pure core of the reader
// (fuzzed). ok is false when the line opens a quoted field it does not close.
func splitLine(line string, delim byte) (fields []string, bad string, ok bool) {
	p := recParser{delim: delim}
	if !p.feed([]byte(line)) {
		return nil, "", false
	}
	return p.fields, p.bad, true
}
