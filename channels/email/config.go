package email

import (
	"crypto"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"net/mail"
	"strings"
	"time"
)

// TLSPolicy says how a sender's SMTP connection is encrypted.
type TLSPolicy string

// TLS policies.
const (
	TLSMandatory     TLSPolicy = "mandatory"     // STARTTLS, and refuse a server that does not offer it (the default)
	TLSOpportunistic TLSPolicy = "opportunistic" // STARTTLS when offered, else plain text
	TLSNone          TLSPolicy = "none"          // plain text (a relay on loopback or a private network)
	TLSImplicit      TLSPolicy = "implicit"      // TLS from the first byte (SMTPS, port 465)
)

// AuthMechanism is the SMTP AUTH mechanism of a sender.
type AuthMechanism string

// AUTH mechanisms.
const (
	AuthNone  AuthMechanism = ""
	AuthPlain AuthMechanism = "PLAIN"
	AuthLogin AuthMechanism = "LOGIN"
)

// Defaults of SenderConfig.
const (
	DefaultPort        = 587
	DefaultPoolSize    = 4
	DefaultTimeout     = 30 * time.Second
	DefaultIdleTimeout = 30 * time.Second
	DefaultMaxPerConn  = 100
)

// SenderConfig is one email sender: the SMTP submission server it sends through, how it
// authenticates, the From it sends as and how it signs. dispatcher.Sender carries no SMTP
// fields: Config.Senders maps a dispatcher.Sender's ID to its SenderConfig (the wiring
// loads them from wherever the sender's secrets live).
type SenderConfig struct {
	Host string // the submission server (required)
	Port int    // default 587 (465 with TLSImplicit)
	// TLS is the encryption policy (default TLSMandatory). TLSConfig, when set, gives the
	// roots and server name to verify (default: the system roots and Host).
	TLS       TLSPolicy
	TLSConfig *tls.Config `json:"-"`
	// Auth is PLAIN or LOGIN with User and Password, or "" for none. go-mail refuses to
	// send a password over a connection that is neither TLS nor to localhost.
	Auth     AuthMechanism
	User     string
	Password string `json:"-"`
	HELO     string // the name given in EHLO (default "localhost")

	From     string // the From address (required): "news@example.com"
	FromName string // the From display name ("Example News"), optional
	// ReturnPath is the envelope sender (MAIL FROM): where bounces go. Default From.
	// Point it at a domain whose MX is Herald's ReportReceiver to read bounces.
	ReturnPath string
	// MessageIDDomain is the right-hand side of Message-IDs (default From's domain).
	MessageIDDomain string

	// DKIM signs every message when DKIMKey is set (with DKIMDomain and DKIMSelector):
	// relaxed/relaxed canonicalization over From, To, Subject, Date, Message-ID,
	// MIME-Version, Content-Type and, when present, List-Unsubscribe,
	// List-Unsubscribe-Post and X-Herald-Callback (RFC 8058 wants the first two signed).
	// ParseDKIMKey reads a PEM key; DKIMRecord gives the DNS TXT record to publish.
	DKIMDomain   string
	DKIMSelector string
	DKIMKey      crypto.Signer `json:"-"`

	PoolSize    int           // open connections kept to the server (default 4)
	MaxPerConn  int           // messages sent on one connection before it is replaced (default 100; <0: no limit)
	IdleTimeout time.Duration // an idle connection older than this is closed, not reused (default 30 s)
	Timeout     time.Duration // dial and per-command I/O deadline (default 30 s)
}

// Config configures a Channel.
type Config struct {
	// Senders maps a dispatcher.Sender's ID to its SMTP configuration. A send for a sender
	// not in it fails with ErrUnknownSender (ActionPauseAccount). SetSender changes it.
	Senders map[string]SenderConfig
	// MaxRetryAfter caps the RetryAfter of refusals (0: the table's waits, up to 30 min
	// for a full mailbox); dev and demo set a few seconds.
	MaxRetryAfter time.Duration
	// MessageKey signs the Message-IDs of campaign messages; the report reader (serve's
	// Receiver) must have the same one. Empty: this process's own random key.
	MessageKey MessageKey
	Logger     *slog.Logger
	Now        func() time.Time // the Date header (default time.Now)
}

// ErrUnknownSender is the error of a send for a sender the Channel has no SMTP
// configuration for.
var ErrUnknownSender = errors.New("no SMTP configuration for this sender")

// withDefaults validates sc and fills in its defaults.
func (sc SenderConfig) withDefaults() (SenderConfig, error) {
	if sc.Host == "" {
		return sc, errors.New("host is required")
	}
	switch sc.TLS {
	case "":
		sc.TLS = TLSMandatory
	case TLSMandatory, TLSOpportunistic, TLSNone, TLSImplicit:
	default:
		return sc, fmt.Errorf("tls %q: want mandatory, opportunistic, none or implicit", sc.TLS)
	}
	if sc.Port == 0 {
		sc.Port = DefaultPort
		if sc.TLS == TLSImplicit {
			sc.Port = 465
		}
	}
	if sc.Port < 0 || sc.Port > 65535 {
		return sc, fmt.Errorf("port %d: out of range", sc.Port)
	}
	switch AuthMechanism(strings.ToUpper(string(sc.Auth))) {
	case AuthNone:
	case AuthPlain, AuthLogin:
		sc.Auth = AuthMechanism(strings.ToUpper(string(sc.Auth)))
		if sc.User == "" {
			return sc, fmt.Errorf("auth %s: user is required", sc.Auth)
		}
	default:
		return sc, fmt.Errorf("auth %q: want PLAIN, LOGIN or none", sc.Auth)
	}
	from, err := mail.ParseAddress(sc.From)
	if err != nil || from.Name != "" {
		return sc, fmt.Errorf("from %q: want a bare address such as news@example.com (the name goes in from_name)", sc.From)
	}
	sc.From = from.Address
	if sc.ReturnPath == "" {
		sc.ReturnPath = sc.From
	} else if rp, err := mail.ParseAddress(sc.ReturnPath); err != nil {
		return sc, fmt.Errorf("return_path %q: %w", sc.ReturnPath, err)
	} else {
		sc.ReturnPath = rp.Address
	}
	if sc.MessageIDDomain == "" {
		sc.MessageIDDomain = sc.From[strings.LastIndexByte(sc.From, '@')+1:]
	}
	if sc.HELO == "" {
		sc.HELO = "localhost"
	}
	if sc.DKIMKey != nil {
		if sc.DKIMDomain == "" || sc.DKIMSelector == "" {
			return sc, errors.New("dkim: a key needs a domain and a selector")
		}
		switch sc.DKIMKey.Public().(type) {
		case *rsa.PublicKey, ed25519.PublicKey:
		default:
			return sc, fmt.Errorf("dkim: key type %T: want RSA or Ed25519", sc.DKIMKey.Public())
		}
	}
	if sc.PoolSize <= 0 {
		sc.PoolSize = DefaultPoolSize
	}
	if sc.MaxPerConn == 0 {
		sc.MaxPerConn = DefaultMaxPerConn
	}
	if sc.IdleTimeout <= 0 {
		sc.IdleTimeout = DefaultIdleTimeout
	}
	if sc.Timeout <= 0 {
		sc.Timeout = DefaultTimeout
	}
	return sc, nil
}

// ParseDKIMKey reads a DKIM private key from PEM: RSA (PKCS #1 or #8) or Ed25519 (PKCS #8).
func ParseDKIMKey(pemBytes []byte) (crypto.Signer, error) {
	block, _ := pem.Decode(pemBytes)
	if block == nil {
		return nil, errors.New("dkim key: no PEM block")
	}
	if k, err := x509.ParsePKCS1PrivateKey(block.Bytes); err == nil {
		return k, nil
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("dkim key: %w", err)
	}
	s, ok := k.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("dkim key: %T cannot sign", k)
	}
	switch s.Public().(type) {
	case *rsa.PublicKey, ed25519.PublicKey:
		return s, nil
	}
	return nil, fmt.Errorf("dkim key: %T: want RSA or Ed25519", k)
}

// DKIMRecord returns the DNS TXT record value to publish at
// {selector}._domainkey.{domain} for the public part of key.
func DKIMRecord(key crypto.Signer) (string, error) {
	switch pub := key.Public().(type) {
	case *rsa.PublicKey:
		der, err := x509.MarshalPKIXPublicKey(pub)
		if err != nil {
			return "", err
		}
		return "v=DKIM1; k=rsa; p=" + base64.StdEncoding.EncodeToString(der), nil
	case ed25519.PublicKey:
		return "v=DKIM1; k=ed25519; p=" + base64.StdEncoding.EncodeToString(pub), nil
	}
	return "", fmt.Errorf("dkim record: key type %T: want RSA or Ed25519", key.Public())
}
