package sandbox

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"mime"
	"strings"
	"time"
)

var mimeDecoder = new(mime.WordDecoder)

// dsn builds a Postfix-style RFC 3464 bounce for rec: a human part, the
// message/delivery-status part naming the recipient, and the original headers
// (text/rfc822-headers), as Postfix sends them.
func (s *Sandbox) dsn(rec Record, raw []byte, now time.Time) []byte {
	status, reply, text := "5.1.1", 550, fmt.Sprintf("<%s>: Recipient address rejected: User unknown in local recipient table", rec.To)
	if unit(hashString('b', strings.ToLower(rec.To))) >= 0.8 {
		status, reply, text = "5.2.2", 552, fmt.Sprintf("<%s>: mailbox full: quota exceeded", rec.To)
	}
	remote := "mx." + domainOf(rec.To)
	boundary := randomToken(12) + "/" + s.cfg.Domain
	queueID := strings.ToUpper(randomToken(5))
	var b bytes.Buffer
	h := func(k, v string) { b.WriteString(k + ": " + v + "\r\n") }
	h("Return-Path", "<>")
	h("Date", now.Format(time.RFC1123Z))
	h("From", "MAILER-DAEMON@"+s.cfg.Domain+" (Mail Delivery System)")
	h("Subject", "Undelivered Mail Returned to Sender")
	h("To", rec.From)
	h("Auto-Submitted", "auto-replied")
	h("MIME-Version", "1.0")
	h("Content-Type", `multipart/report; report-type=delivery-status;`+"\r\n\t"+`boundary="`+boundary+`"`)
	h("Content-Transfer-Encoding", "8bit")
	h("Message-Id", "<"+randomToken(8)+"@"+s.cfg.Domain+">")
	b.WriteString("\r\nThis is a MIME-encapsulated message.\r\n\r\n")
	b.WriteString("--" + boundary + "\r\n")
	h("Content-Description", "Notification")
	h("Content-Type", "text/plain; charset=us-ascii")
	b.WriteString("\r\nThis is the mail system at host " + s.cfg.Domain + ".\r\n\r\n" +
		"I'm sorry to have to inform you that your message could not\r\nbe delivered to one or more recipients. It's attached below.\r\n\r\n" +
		"For further assistance, please send mail to postmaster.\r\n\r\n" +
		"If you do so, please include this problem report. You can\r\ndelete your own text from the attached returned message.\r\n\r\n" +
		"                   The mail system\r\n\r\n" +
		fmt.Sprintf("<%s>: host %s[192.0.2.25] said: %d %s %s (in reply to RCPT TO\r\n    command)\r\n\r\n", rec.To, remote, reply, status, text))
	b.WriteString("--" + boundary + "\r\n")
	h("Content-Description", "Delivery report")
	h("Content-Type", "message/delivery-status")
	b.WriteString("\r\n")
	h("Reporting-MTA", "dns; "+s.cfg.Domain)
	h("X-Postfix-Queue-ID", queueID)
	h("X-Postfix-Sender", "rfc822; "+rec.From)
	h("Arrival-Date", rec.At.Format(time.RFC1123Z))
	b.WriteString("\r\n")
	h("Final-Recipient", "rfc822; "+rec.To)
	h("Original-Recipient", "rfc822;"+rec.To)
	h("Action", "failed")
	h("Status", status)
	h("Remote-MTA", "dns; "+remote)
	h("Diagnostic-Code", fmt.Sprintf("smtp; %d %s %s", reply, status, text))
	b.WriteString("\r\n")
	b.WriteString("--" + boundary + "\r\n")
	h("Content-Description", "Undelivered Message Headers")
	h("Content-Type", "text/rfc822-headers")
	b.WriteString("\r\n")
	b.Write(headerSection(raw))
	b.WriteString("\r\n--" + boundary + "--\r\n")
	return b.Bytes()
}

// arf builds an AOL/Yahoo-style RFC 5965 abuse report for rec, quoting the whole
// original message (message/rfc822).
func (s *Sandbox) arf(rec Record, raw []byte, now time.Time) []byte {
	boundary := "----=_Part_" + randomToken(10)
	var b bytes.Buffer
	h := func(k, v string) { b.WriteString(k + ": " + v + "\r\n") }
	h("From", "Sandbox Feedback Loop <feedback@"+s.cfg.Domain+">")
	h("Date", now.Format(time.RFC1123Z))
	h("Subject", "FW: "+rec.Subject)
	h("To", rec.From)
	h("Message-ID", "<"+randomToken(8)+"@"+s.cfg.Domain+">")
	h("MIME-Version", "1.0")
	h("Content-Type", `multipart/report; report-type=feedback-report;`+"\r\n\t"+`boundary="`+boundary+`"`)
	b.WriteString("\r\n--" + boundary + "\r\n")
	h("Content-Type", `text/plain; charset="US-ASCII"`)
	h("Content-Transfer-Encoding", "7bit")
	b.WriteString("\r\nThis is an email abuse report for an email message received from IP\r\n" +
		"127.0.0.1 on " + rec.At.Format(time.RFC1123Z) + ".\r\n" +
		"For more information about this format please see http://www.mipassoc.org/arf/.\r\n\r\n")
	b.WriteString("--" + boundary + "\r\n")
	h("Content-Type", "message/feedback-report")
	b.WriteString("\r\n")
	h("Feedback-Type", "abuse")
	h("User-Agent", "SandboxFBL/1.0")
	h("Version", "1")
	h("Original-Mail-From", "<"+rec.From+">")
	h("Original-Rcpt-To", "<"+rec.To+">")
	h("Arrival-Date", rec.At.Format(time.RFC1123Z))
	h("Reported-Domain", domainOf(rec.From))
	h("Source-IP", "127.0.0.1")
	b.WriteString("\r\n--" + boundary + "\r\n")
	h("Content-Type", "message/rfc822")
	h("Content-Disposition", "inline")
	b.WriteString("\r\n")
	b.Write(raw)
	if !bytes.HasSuffix(raw, []byte("\r\n")) {
		b.WriteString("\r\n")
	}
	b.WriteString("\r\n--" + boundary + "--\r\n")
	return b.Bytes()
}

// headerSection returns raw's header section (without the blank line).
func headerSection(raw []byte) []byte {
	if i := bytes.Index(raw, []byte("\r\n\r\n")); i >= 0 {
		return raw[:i+2]
	}
	if i := bytes.Index(raw, []byte("\n\n")); i >= 0 {
		return raw[:i+1]
	}
	return raw
}

func domainOf(addr string) string {
	if i := strings.LastIndexByte(addr, '@'); i >= 0 {
		return strings.ToLower(addr[i+1:])
	}
	return "invalid"
}

func randomToken(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)[:n]
}

// hashString is FNV-1a over salt and s, finalized so that close inputs spread out (the
// WhatsApp sandbox's recipe: fates are reproducible across runs and processes).
func hashString(salt byte, s string) uint64 {
	const prime = 1099511628211
	h := uint64(14695981039346656037)
	h = (h ^ uint64(salt)) * prime
	for i := 0; i < len(s); i++ {
		h = (h ^ uint64(s[i])) * prime
	}
	return mix64(h)
}

func mix64(z uint64) uint64 {
	z = (z ^ z>>30) * 0xbf58476d1ce4e5b9
	z = (z ^ z>>27) * 0x94d049bb133111eb
	return z ^ z>>31
}

// unit maps a hash to [0, 1).
func unit(h uint64) float64 { return float64(h>>11) / (1 << 53) }
