package email

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net/mail"
	"net/textproto"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/herald-dev/herald/dispatcher"
	"github.com/herald-dev/herald/internal/events"
)

// MaxReportBytes bounds the messages ParseReport reads; bounces quoting a large original
// are cut by the receiver before this.
const MaxReportBytes = 10 << 20

// Errors of ParseReport.
var (
	// ErrNotReport: the message is not a multipart/report DSN or ARF report (an
	// out-of-office reply, a human answer): nothing to record.
	ErrNotReport = errors.New("not a delivery status or feedback report")
	// ErrUnknownMessage: a report about a message Herald cannot name (no Herald
	// Message-ID in it that the MessageKey verifies).
	ErrUnknownMessage = errors.New("report names no Herald message")
)

// ParseReport reads a bounce (RFC 3464 multipart/report; report-type=delivery-status)
// or a complaint (RFC 5965 multipart/report; report-type=feedback-report) and returns
// what it says about Herald's messages, one Report per recipient:
//
//   - a DSN recipient with Action failed: Kind events.Failed, Code the Diagnostic-Code's
//     reply (else 550 or 450 from the Status class), Action from the Codes table by
//     (reply, Status); a hard bounce (5.1.1 …) is ActionUndeliverable, and a failure
//     the table would retry (a 4.x.x the MTA gave up on) is ActionNone: its message is gone;
//   - Action delivered, relayed or expanded: Kind events.Delivered, ActionNone;
//   - Action delayed: no report (the MTA is still trying);
//   - an ARF report with Feedback-Type abuse or fraud: Kind events.OptedOut, Action
//     ActionOptOut (other feedback types, such as not-spam or auth-failure, give none).
//
// The (campaign, contact) comes from the original message's Message-ID, found in the
// report's third part (the original message or its headers), or from an
// Original-Message-ID field, or from a Herald Message-ID quoted anywhere in the report;
// only a Message-ID that mk verifies counts (VerifyMessageID), never the
// X-Herald-Callback header alone: anyone can mail a report. It returns ErrNotReport for
// other messages and ErrUnknownMessage when no Herald message can be named.
func ParseReport(raw []byte, mk MessageKey) ([]dispatcher.Report, error) {
	if len(raw) > MaxReportBytes {
		return nil, fmt.Errorf("report of %d bytes: over the %d-byte limit", len(raw), MaxReportBytes)
	}
	msg, err := mail.ReadMessage(bytes.NewReader(raw))
	if err != nil {
		return nil, fmt.Errorf("read report: %w", err)
	}
	mediaType, params, err := mime.ParseMediaType(msg.Header.Get("Content-Type"))
	if err != nil || mediaType != "multipart/report" {
		return nil, ErrNotReport
	}
	reportType := strings.ToLower(params["report-type"])
	if reportType != "delivery-status" && reportType != "feedback-report" {
		return nil, ErrNotReport
	}
	if params["boundary"] == "" {
		return nil, errors.New("read report: multipart/report without a boundary")
	}
	var (
		status   []byte // the machine-readable part
		original []byte // the original message or its headers
		human    []byte
	)
	mr := multipart.NewReader(msg.Body, params["boundary"])
	for i := 0; i < 16; i++ {
		p, err := mr.NextRawPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("read report part %d: %w", i+1, err)
		}
		body, err := partBody(p)
		if err != nil {
			return nil, fmt.Errorf("read report part %d: %w", i+1, err)
		}
		pt, _, _ := mime.ParseMediaType(p.Header.Get("Content-Type"))
		switch pt {
		case "message/delivery-status", "message/global-delivery-status", "message/feedback-report":
			if status == nil {
				status = body
			}
		case "message/rfc822", "text/rfc822-headers", "message/rfc822-headers", "message/global", "message/global-headers":
			if original == nil {
				original = body
			}
		case "text/plain", "":
			if human == nil {
				human = body
			}
		}
	}
	if status == nil {
		return nil, fmt.Errorf("read report: no %s part", map[string]string{"delivery-status": "message/delivery-status",
			"feedback-report": "message/feedback-report"}[reportType])
	}
	groups, err := fieldGroups(status)
	if err != nil {
		return nil, fmt.Errorf("read report fields: %w", err)
	}
	if len(groups) == 0 {
		return nil, errors.New("read report: empty status part")
	}
	key, variant, msgID, ok := findOriginal(mk, original, groups, human, raw)
	if !ok {
		return nil, ErrUnknownMessage
	}
	base := dispatcher.Report{Key: key, Variant: variant, Channel: ChannelName, MessageID: msgID}
	if at := strings.LastIndexByte(msgID, '@'); at >= 0 {
		base.SenderRef = msgID[at+1:] // the sending domain
	}
	reportDate, _ := mail.ParseDate(msg.Header.Get("Date"))
	if reportType == "feedback-report" {
		return feedbackReports(base, groups[0], reportDate), nil
	}
	return deliveryReports(base, groups, reportDate), nil
}

// partBody returns a part's body, decoded from base64 or quoted-printable, at most
// MaxReportBytes.
func partBody(p *multipart.Part) ([]byte, error) {
	var r io.Reader = io.LimitReader(p, MaxReportBytes)
	switch strings.ToLower(strings.TrimSpace(p.Header.Get("Content-Transfer-Encoding"))) {
	case "base64":
		r = base64.NewDecoder(base64.StdEncoding, &stripSpace{r: r})
	case "quoted-printable":
		r = quotedprintable.NewReader(r)
	}
	return io.ReadAll(r)
}

// fieldGroups reads the blank-line-separated groups of header fields of a
// message/delivery-status or message/feedback-report body.
func fieldGroups(b []byte) ([]textproto.MIMEHeader, error) {
	tr := textproto.NewReader(bufio.NewReader(bytes.NewReader(b)))
	var groups []textproto.MIMEHeader
	for len(groups) < 1000 {
		// Skip blank lines between groups.
		for {
			peek, err := tr.R.Peek(1)
			if err != nil {
				return groups, nil
			}
			if peek[0] != '\r' && peek[0] != '\n' {
				break
			}
			if _, err := tr.R.ReadByte(); err != nil {
				return groups, nil
			}
		}
		h, err := tr.ReadMIMEHeader()
		if len(h) > 0 {
			groups = append(groups, h)
		}
		if err == io.EOF {
			return groups, nil
		}
		if err != nil {
			return groups, err
		}
	}
	return groups, nil
}

// heraldMsgID finds Herald Message-IDs quoted in free text.
var heraldMsgID = regexp.MustCompile(`<?herald\.[A-Za-z0-9_=.-]{1,600}@[A-Za-z0-9.-]{1,253}>?`)

// findOriginal names the message a report is about.
func findOriginal(mk MessageKey, original []byte, groups []textproto.MIMEHeader, human, raw []byte) (dispatcher.Key, string, string, bool) {
	if len(original) > 0 {
		// A malformed field ends the header early: what was read before still counts.
		if h, _ := textproto.NewReader(bufio.NewReader(bytes.NewReader(original))).ReadMIMEHeader(); len(h) > 0 {
			id := strings.TrimSpace(h.Get("Message-Id"))
			if key, variant, ok := VerifyMessageID(id, mk); ok {
				return key, variant, strings.Trim(id, "<>"), true
			}
		}
	}
	for _, g := range groups {
		for _, f := range []string{"Original-Message-Id", "X-Original-Message-Id"} {
			if id := g.Get(f); id != "" {
				if key, variant, ok := VerifyMessageID(id, mk); ok {
					return key, variant, strings.Trim(strings.TrimSpace(id), "<>"), true
				}
			}
		}
	}
	for _, text := range [][]byte{original, human, raw} {
		for _, m := range heraldMsgID.FindAll(text, 8) {
			if key, variant, ok := VerifyMessageID(string(m), mk); ok {
				return key, variant, strings.Trim(string(m), "<>"), true
			}
		}
	}
	return dispatcher.Key{}, "", "", false
}

func deliveryReports(base dispatcher.Report, groups []textproto.MIMEHeader, reportDate time.Time) []dispatcher.Report {
	perMessage := groups[0]
	recipients := groups[1:]
	if perMessage.Get("Action") != "" || perMessage.Get("Final-Recipient") != "" {
		// No per-message group (a sloppy MTA): every group is a recipient.
		recipients = groups
	}
	arrival := parseDate(perMessage.Get("Arrival-Date"))
	var out []dispatcher.Report
	for _, g := range recipients {
		action := strings.ToLower(strings.TrimSpace(firstWord(g.Get("Action"))))
		r := base
		r.Time = firstTime(parseDate(g.Get("Last-Attempt-Date")), arrival, reportDate)
		switch action {
		case "failed":
			reply, enhanced := dsnCode(g.Get("Status"), g.Get("Diagnostic-Code"))
			info := ClassifyReply(reply, enhanced)
			r.Kind, r.Code, r.Action = events.Failed, reply, info.Action
			if info.Retryable || info.Action == dispatcher.ActionTransport {
				r.Action = dispatcher.ActionNone // the MTA gave up: nothing left to retry
			}
		case "delivered", "relayed", "expanded":
			r.Kind, r.Action = events.Delivered, dispatcher.ActionNone
		default: // delayed, or unknown: the MTA is still trying
			continue
		}
		out = append(out, r)
	}
	return out
}

func feedbackReports(base dispatcher.Report, g textproto.MIMEHeader, reportDate time.Time) []dispatcher.Report {
	switch strings.ToLower(strings.TrimSpace(g.Get("Feedback-Type"))) {
	case "abuse", "fraud":
	default:
		return nil
	}
	r := base
	r.Kind, r.Action = events.OptedOut, dispatcher.ActionOptOut
	r.Time = firstTime(parseDate(g.Get("Arrival-Date")), parseDate(g.Get("Received-Date")), reportDate)
	return []dispatcher.Report{r}
}

// dsnCode returns the basic reply code of a Diagnostic-Code ("smtp; 550 5.1.1 …") and
// the enhanced status code of the Status field (else the diagnostic's). Without a
// diagnostic reply, the code is 550 for a 5.x.x status and 450 for a 4.x.x one.
func dsnCode(status, diagnostic string) (int, string) {
	enhanced := parseEnhanced(strings.TrimSpace(firstWord(status)))
	reply := 0
	if _, text, ok := strings.Cut(diagnostic, ";"); ok {
		text = strings.TrimSpace(text)
		if len(text) >= 3 {
			if n, err := strconv.Atoi(text[:3]); err == nil && n >= 200 && n <= 599 && (len(text) == 3 || text[3] == ' ' || text[3] == '-') {
				reply = n
				if enhanced == "" {
					enhanced = enhancedCode(n, strings.TrimSpace(text[3:]))
				}
			}
		}
	}
	if enhanced != "" && reply != 0 && reply/100 != int(enhanced[0]-'0') {
		reply = 0 // the final status wins over a stale diagnostic
	}
	if reply == 0 && enhanced != "" {
		reply = int(enhanced[0]-'0')*100 + 50
	}
	if reply == 0 {
		reply = 550
	}
	return reply, enhanced
}

func firstWord(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexAny(s, " \t("); i >= 0 {
		return s[:i]
	}
	return s
}

func parseDate(s string) time.Time {
	if s == "" {
		return time.Time{}
	}
	t, err := mail.ParseDate(strings.TrimSpace(s))
	if err != nil {
		return time.Time{}
	}
	return t
}

func firstTime(ts ...time.Time) time.Time {
	for _, t := range ts {
		if !t.IsZero() {
			return t.UTC()
		}
	}
	return time.Time{}
}

// stripSpace drops CR, LF, spaces and tabs (base64 bodies are folded).
type stripSpace struct{ r io.Reader }

func (s *stripSpace) Read(p []byte) (int, error) {
	for {
		n, err := s.r.Read(p)
		j := 0
		for _, c := range p[:n] {
			if c != '\r' && c != '\n' && c != ' ' && c != '\t' {
				p[j] = c
				j++
			}
		}
		if j > 0 || err != nil {
			return j, err
		}
	}
}
