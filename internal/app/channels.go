package app

import (
	"context"
	"crypto/rand"
	"fmt"
	"maps"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/herald-dev/herald/channels/email"
	"github.com/herald-dev/herald/channels/line"
	"github.com/herald-dev/herald/channels/sms"
	"github.com/herald-dev/herald/channels/telegram"
	"github.com/herald-dev/herald/channels/whatsapp"
	"github.com/herald-dev/herald/dispatcher"
)

// Dev SMS account of the stack's sandbox.
const (
	DevSMSAccount = "ACdev00000000000000000000000000000"
	DevSMSToken   = "dev-sms-auth-token"
)

// smsConfig is an SMS sender's provider configuration, from its registry entry.
func smsConfig(s dispatcher.Sender) (sms.SenderConfig, error) {
	sc := sms.SenderConfig{AccountSID: s.Settings["account_sid"], AuthToken: s.Token, From: s.Settings["from"],
		MessagingServiceSID: s.Settings["messaging_service_sid"], Type: sms.SenderType(s.Settings["sender_type"])}
	if v := s.Settings["validity_period"]; v != "" {
		sec, err := strconv.Atoi(v)
		if err != nil {
			return sc, fmt.Errorf("sender %s: validity_period %q: want seconds", s.ID, v)
		}
		sc.ValidityPeriod = time.Duration(sec) * time.Second
	}
	return sc, sc.Validate(s.ID)
}

// smsSenders sends through the SMS adapter, handing it each sender's configuration
// from the registry before its first send and again when it changes.
type smsSenders struct {
	ch   *sms.Channel
	mu   sync.Mutex
	seen map[string]sms.SenderConfig
}

var _ dispatcher.Channel = (*smsSenders)(nil)

func (a *smsSenders) Send(ctx context.Context, s dispatcher.Sender, m dispatcher.Message) (string, error) {
	if err := a.ensure(s); err != nil {
		return "", &dispatcher.SendError{Action: dispatcher.ActionPauseAccount, Err: err}
	}
	return a.ch.Send(ctx, s, m)
}

func (a *smsSenders) ensure(s dispatcher.Sender) error {
	sc, err := smsConfig(s)
	if err != nil {
		return err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if old, ok := a.seen[s.ID]; ok && old == sc {
		return nil
	}
	if err := a.ch.SetSender(s.ID, sc); err != nil {
		return err
	}
	a.seen[s.ID] = sc
	return nil
}

// refresh hands the adapter every SMS sender of the registry (serve does it when a
// webhook names an account it has not seen).
func (a *smsSenders) refresh(ctx context.Context, senders *dispatcher.Senders) error {
	all, err := senders.List(ctx)
	if err != nil {
		return err
	}
	for _, s := range all {
		if s.Channel == "sms" {
			if err := a.ensure(s); err != nil {
				return err
			}
		}
	}
	return nil
}

// SMS returns the process's SMS adapter (one per Deps).
func (d *Deps) SMS() (*smsSenders, error) {
	d.smsOnce.Do(func() {
		var ch *sms.Channel
		ch, d.smsErr = sms.New(sms.Config{BaseURL: d.Cfg.SMSAPIURL, PublicURL: d.Cfg.publicURL()})
		if d.smsErr == nil {
			d.sms = &smsSenders{ch: ch, seen: map[string]sms.SenderConfig{}}
		}
	})
	return d.sms, d.smsErr
}

// Channels are the adapters of every channel this process sends on, by name.
func (d *Deps) Channels() (map[string]dispatcher.Channel, error) {
	out := map[string]dispatcher.Channel{whatsapp.ChannelName: whatsapp.New(d.WhatsAppClient())}
	if e, err := d.Email(); err == nil {
		out["email"] = e
	} else {
		d.Cfg.Logger.Warn("email channel off: its campaigns fail channel_unconfigured", "err", err)
	}
	if s, err := d.SMS(); err == nil {
		out["sms"] = s
	} else {
		d.Cfg.Logger.Warn("SMS channel off: its campaigns fail channel_unconfigured", "err", err)
	}
	if tg, err := d.Telegram(); err == nil {
		out[telegram.ChannelName] = tg
	} else {
		d.Cfg.Logger.Warn("Telegram channel off: its campaigns fail channel_unconfigured", "err", err)
	}
	if l, err := d.LINE(); err == nil {
		out[line.ChannelName] = l
	} else {
		d.Cfg.Logger.Warn("LINE channel off: its campaigns fail channel_unconfigured", "err", err)
	}
	return out, nil
}

// publicURL is serve's public origin as providers reach it.
func (c Config) publicURL() string {
	if c.PublicURL != "" {
		return c.PublicURL
	}
	if c.ClickBaseURL != "" {
		return c.ClickBaseURL
	}
	if strings.HasPrefix(c.HTTPAddr, ":") {
		return "http://localhost" + c.HTTPAddr
	}
	return "http://" + c.HTTPAddr
}

// emailConfig is an email sender's SMTP configuration, from its registry entry.
func emailConfig(s dispatcher.Sender) (email.SenderConfig, error) {
	host, port, err := net.SplitHostPort(s.Settings["smtp_addr"])
	if err != nil {
		return email.SenderConfig{}, fmt.Errorf("sender %s: smtp_addr %q: want host:port", s.ID, s.Settings["smtp_addr"])
	}
	p, err := strconv.Atoi(port)
	if err != nil {
		return email.SenderConfig{}, fmt.Errorf("sender %s: smtp_addr %q: bad port", s.ID, s.Settings["smtp_addr"])
	}
	sc := email.SenderConfig{Host: host, Port: p, TLS: email.TLSPolicy(s.Settings["tls"]), User: s.Settings["username"], Password: s.Token,
		From: s.Settings["from"], FromName: s.Settings["from_name"], ReturnPath: s.Settings["return_path"],
		DKIMDomain: s.Settings["dkim_domain"], DKIMSelector: s.Settings["dkim_selector"]}
	for _, f := range []struct {
		key string
		to  *int
	}{{"pool_size", &sc.PoolSize}, {"max_per_conn", &sc.MaxPerConn}} {
		if v := s.Settings[f.key]; v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || f.key == "pool_size" && (n < 1 || n > 100) {
				return sc, fmt.Errorf("sender %s: %s %q: want a whole number (pool_size 1 to 100, max_per_conn -1 for no limit)", s.ID, f.key, v)
			}
			*f.to = n
		}
	}
	if sc.User != "" {
		sc.Auth = email.AuthMechanism(strings.ToUpper(s.Settings["auth"]))
		if sc.Auth == "" {
			sc.Auth = "PLAIN"
		}
	}
	if f := s.Settings["dkim_key_file"]; f != "" {
		pem, err := os.ReadFile(f)
		if err != nil {
			return sc, fmt.Errorf("sender %s: dkim_key_file: %w", s.ID, err)
		}
		if sc.DKIMKey, err = email.ParseDKIMKey(pem); err != nil {
			return sc, fmt.Errorf("sender %s: dkim_key_file %s: %w", s.ID, f, err)
		}
	}
	return sc, nil
}

// emailSenders sends through the email adapter, handing it each sender's SMTP
// configuration from the registry before its first send and again when it changes.
type emailSenders struct {
	ch   *email.Channel
	mu   sync.RWMutex
	seen map[string]handedOver // by sender id
}

// handedOver is a sender's settings and secret as last handed to the adapter.
type handedOver struct {
	settings map[string]string
	token    string
}

var _ dispatcher.Channel = (*emailSenders)(nil)

func (a *emailSenders) Send(ctx context.Context, s dispatcher.Sender, m dispatcher.Message) (string, error) {
	if err := a.ensure(s); err != nil {
		return "", &dispatcher.SendError{Action: dispatcher.ActionPauseAccount, Err: err}
	}
	return a.ch.Send(ctx, s, m)
}

// ensure hands s's configuration over unless it is the one handed over last: a
// comparison of a few strings per send, under a read lock.
func (a *emailSenders) ensure(s dispatcher.Sender) error {
	a.mu.RLock()
	h, ok := a.seen[s.ID]
	a.mu.RUnlock()
	if ok && h.token == s.Token && maps.Equal(h.settings, s.Settings) {
		return nil
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if h, ok := a.seen[s.ID]; ok && h.token == s.Token && maps.Equal(h.settings, s.Settings) {
		return nil
	}
	sc, err := emailConfig(s)
	if err != nil {
		return err
	}
	if err := a.ch.SetSender(s.ID, sc); err != nil {
		return err
	}
	a.seen[s.ID] = handedOver{settings: maps.Clone(s.Settings), token: s.Token}
	return nil
}

// Email returns the process's email adapter (one per Deps).
func (d *Deps) Email() (*emailSenders, error) {
	d.emailOnce.Do(func() {
		var key email.MessageKey
		if key, d.emailErr = d.MessageKey(context.Background()); d.emailErr != nil {
			return
		}
		var ch *email.Channel
		ch, d.emailErr = email.New(email.Config{MaxRetryAfter: d.Cfg.EmailMaxRetryAfter, MessageKey: key, Logger: d.Cfg.Logger})
		if d.emailErr == nil {
			d.email = &emailSenders{ch: ch, seen: map[string]handedOver{}}
		}
	})
	return d.email, d.emailErr
}

// MessageKey returns the key that signs email Message-IDs and verifies the ones bounces
// and complaints quote. Workers and serve share it through Redis: the first process to
// need it stores a random one (SETNX), and every process reads the same.
func (d *Deps) MessageKey(ctx context.Context) (email.MessageKey, error) {
	rdb, err := d.Redis()
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	k := d.Cfg.Prefix + "keys:email_message_id"
	fresh := make([]byte, 32)
	_, _ = rand.Read(fresh)
	if err := rdb.SetNX(ctx, k, fresh, 0).Err(); err != nil {
		return nil, fmt.Errorf("email message key: %w", err)
	}
	key, err := rdb.Get(ctx, k).Bytes()
	if err != nil {
		return nil, fmt.Errorf("email message key: %w", err)
	}
	if len(key) < 16 {
		return nil, fmt.Errorf("email message key %s in Redis is %d bytes; want at least 16", k, len(key))
	}
	return key, nil
}
