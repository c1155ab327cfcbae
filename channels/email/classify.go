package email

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"net/textproto"
	"strings"

	"github.com/herald-dev/herald/dispatcher"
)

// ReplyError is an SMTP server's refusal: its basic reply code, its enhanced status code
// ("" when the server gave none) and its text.
type ReplyError struct {
	Reply    int
	Enhanced string
	Text     string
	Command  string // the command it answered: AUTH, MAIL, RCPT, DATA (the end of the data)
}

func (e *ReplyError) Error() string {
	s := e.Command + ": " + itoa(e.Reply)
	if e.Enhanced != "" && !strings.HasPrefix(e.Text, e.Enhanced) {
		s += " " + e.Enhanced
	}
	return s + " " + e.Text
}

// ConfigError is a sender configuration the server or the client refuses before any
// message is sent: STARTTLS required but not offered, an untrusted certificate, an AUTH
// mechanism the server lacks. Every message of the sender would fail the same way.
type ConfigError struct{ Err error }

func (e *ConfigError) Error() string { return "email sender configuration: " + e.Err.Error() }
func (e *ConfigError) Unwrap() error { return e.Err }

// replyError turns an error of the go-mail SMTP client into a *ReplyError when it carries
// a reply (a *textproto.Error), and leaves any other error as it is.
func replyError(cmd string, err error) error {
	var te *textproto.Error
	if !errors.As(err, &te) {
		return err
	}
	return &ReplyError{Reply: te.Code, Enhanced: enhancedCode(te.Code, te.Msg), Text: firstLine(te.Msg), Command: cmd}
}

// enhancedCode returns the enhanced status code the reply text starts with ("5.1.1 ...")
// when its class matches the basic code's, else "".
func enhancedCode(reply int, text string) string {
	text = strings.TrimLeft(text, " -")
	c := parseEnhanced(text)
	if c == "" || reply/100 != int(c[0]-'0') {
		return ""
	}
	return c
}

// parseEnhanced reads a "c.s.d" status code (c in 2, 4, 5; s and d of 1–3 digits) at the
// start of s, followed by the end of s or a space.
func parseEnhanced(s string) string {
	if len(s) < 5 || (s[0] != '2' && s[0] != '4' && s[0] != '5') || s[1] != '.' {
		return ""
	}
	i := 2
	for part := 0; part < 2; part++ {
		n := 0
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
			n++
		}
		if n == 0 || n > 3 {
			return ""
		}
		if part == 0 {
			if i >= len(s) || s[i] != '.' {
				return ""
			}
			i++
		}
	}
	if i < len(s) && s[i] != ' ' && s[i] != '\t' && s[i] != ';' && s[i] != '\r' && s[i] != '\n' {
		return ""
	}
	return s[:i]
}

func firstLine(s string) string {
	if i := strings.IndexAny(s, "\r\n"); i >= 0 {
		return s[:i]
	}
	return s
}

// Classify maps an error of Channel.Send to the refusal the core acts on: a *ReplyError
// by the Codes table, a *ConfigError pauses the account, connection errors and timeouts
// are ActionTransport (retryable, code 0). It returns nil for nil and the error itself
// when it already is a *dispatcher.SendError.
func Classify(err error) *dispatcher.SendError {
	if err == nil {
		return nil
	}
	if se, ok := errors.AsType[*dispatcher.SendError](err); ok {
		return se
	}
	if re, ok := errors.AsType[*ReplyError](err); ok {
		info := ClassifyReply(re.Reply, re.Enhanced)
		return &dispatcher.SendError{Code: re.Reply, Action: info.Action, Retryable: info.Retryable, RetryAfter: info.RetryAfter, Err: err}
	}
	if _, ok := errors.AsType[*ConfigError](err); ok {
		return &dispatcher.SendError{Action: dispatcher.ActionPauseAccount, Err: err}
	}
	if isConfigTLS(err) {
		return &dispatcher.SendError{Action: dispatcher.ActionPauseAccount, Err: &ConfigError{Err: err}}
	}
	// Connection refused or reset, EOF, timeouts, a cancelled context: nothing says the
	// message is bad, so the job is tried again.
	return &dispatcher.SendError{Action: dispatcher.ActionTransport, Retryable: true, Err: err}
}

// isConfigTLS reports certificate errors: an untrusted or mismatched server certificate
// is a configuration to fix, not a network hiccup.
func isConfigTLS(err error) bool {
	var (
		unknown  x509.UnknownAuthorityError
		hostname x509.HostnameError
		invalid  x509.CertificateInvalidError
		verify   *tls.CertificateVerificationError
	)
	return errors.As(err, &unknown) || errors.As(err, &hostname) || errors.As(err, &invalid) || errors.As(err, &verify)
}

// broken reports whether err means the connection is unusable (it must be closed and
// not returned to the pool): anything but a reply other than 421.
func broken(err error) bool {
	if re, ok := errors.AsType[*ReplyError](err); ok {
		return re.Reply == 421
	}
	return true
}

// retryableOnFreshConn reports whether a failure before the message's data was sent
// may be retried at once on another connection: the connection broke (EOF, reset,
// a server's 421) rather than the server refusing this message.
func retryableOnFreshConn(err error) bool {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	if re, ok := errors.AsType[*ReplyError](err); ok {
		return re.Reply == 421
	}
	if _, ok := errors.AsType[*ConfigError](err); ok {
		return false
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return false // a stalled server: don't double the wait
	}
	return true
}

func itoa(n int) string {
	if n < 0 || n > 999 {
		return "?"
	}
	return string([]byte{byte('0' + n/100), byte('0' + n/10%10), byte('0' + n%10)})
}
