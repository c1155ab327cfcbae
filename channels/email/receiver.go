package email

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync/atomic"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/herald-dev/herald/dispatcher"
)

// ReceiverConfig configures a Receiver.
type ReceiverConfig struct {
	Addr string // listen address, e.g. ":2525" (default 127.0.0.1:0)
	// Listener, when set, is served instead of listening on Addr (a caller that holds
	// its port from the start, so no other process can take it in between).
	Listener net.Listener
	Domain   string      // the name in the greeting (default "localhost")
	TLS      *tls.Config // offers STARTTLS when set
	// Handle is given the reports of each DSN or ARF report received. An error answers
	// the sending MTA with 451 4.3.0, so it delivers the report again later (as a webhook
	// provider retries a non-200): Handle must be idempotent.
	Handle          func(ctx context.Context, reports []dispatcher.Report) error
	MaxMessageBytes int64 // default MaxReportBytes
	// MessageKey verifies the Message-IDs reports quote: the senders' key (see
	// Config.MessageKey). Empty: this process's own random key.
	MessageKey MessageKey
	Logger     *slog.Logger
}

// ReceiverStats are a Receiver's counters.
type ReceiverStats struct {
	Messages int64 // messages received
	Reports  int64 // reports handed to Handle
	Ignored  int64 // not reports, about no Herald message, or malformed: accepted and dropped
	Failed   int64 // Handle failed: answered 451
}

// Receiver is an SMTP server for the bounces and complaints of Herald's email: point the
// MX of the senders' ReturnPath domain (and the feedback-loop address) at it. Every
// message it accepts goes through ParseReport; what names Herald messages goes to
// Handle. Messages that are not reports are accepted and dropped.
type Receiver struct {
	cfg    ReceiverConfig
	log    *slog.Logger
	srv    *smtp.Server
	ln     net.Listener
	ctx    atomic.Pointer[context.Context]
	msgs   atomic.Int64
	nRep   atomic.Int64
	ignore atomic.Int64
	failed atomic.Int64
}

// NewReceiver listens on cfg.Addr; Run serves.
func NewReceiver(cfg ReceiverConfig) (*Receiver, error) {
	if cfg.Handle == nil {
		return nil, errors.New("email receiver: Handle is required")
	}
	if cfg.Addr == "" {
		cfg.Addr = "127.0.0.1:0"
	}
	if cfg.Domain == "" {
		cfg.Domain = "localhost"
	}
	if cfg.MaxMessageBytes <= 0 {
		cfg.MaxMessageBytes = MaxReportBytes
	}
	r := &Receiver{cfg: cfg, log: cfg.Logger}
	if r.log == nil {
		r.log = slog.New(slog.DiscardHandler)
	}
	r.log = r.log.With("component", "email-receiver")
	ln := cfg.Listener
	if ln == nil {
		var err error
		if ln, err = net.Listen("tcp", cfg.Addr); err != nil {
			return nil, fmt.Errorf("email receiver: listen: %w", err)
		}
	}
	r.ln = ln
	srv := smtp.NewServer(smtp.BackendFunc(func(*smtp.Conn) (smtp.Session, error) { return &receiverSession{r: r}, nil }))
	srv.Domain = cfg.Domain
	srv.MaxMessageBytes = cfg.MaxMessageBytes
	srv.MaxRecipients = 50
	srv.TLSConfig = cfg.TLS
	srv.ReadTimeout = 2 * time.Minute
	srv.WriteTimeout = time.Minute
	srv.ErrorLog = slog.NewLogLogger(r.log.Handler(), slog.LevelDebug)
	r.srv = srv
	return r, nil
}

// Addr is the address the receiver listens on.
func (r *Receiver) Addr() string { return r.ln.Addr().String() }

// Run serves until ctx ends, then closes every connection.
func (r *Receiver) Run(ctx context.Context) error {
	r.ctx.Store(&ctx)
	// The listener too: Serve may not have registered it with the server yet.
	stop := context.AfterFunc(ctx, func() { _ = r.srv.Close(); _ = r.ln.Close() })
	defer stop()
	err := r.srv.Serve(r.ln)
	if errors.Is(err, smtp.ErrServerClosed) || ctx.Err() != nil {
		return nil
	}
	return fmt.Errorf("email receiver: %w", err)
}

// Stats returns the counters.
func (r *Receiver) Stats() ReceiverStats {
	return ReceiverStats{Messages: r.msgs.Load(), Reports: r.nRep.Load(), Ignored: r.ignore.Load(), Failed: r.failed.Load()}
}

type receiverSession struct{ r *Receiver }

func (s *receiverSession) Reset()                               {}
func (s *receiverSession) Logout() error                        { return nil }
func (s *receiverSession) Mail(string, *smtp.MailOptions) error { return nil }
func (s *receiverSession) Rcpt(string, *smtp.RcptOptions) error { return nil }
func (s *receiverSession) Data(rd io.Reader) error              { return s.r.receive(rd) }

func (r *Receiver) receive(rd io.Reader) error {
	raw, err := io.ReadAll(rd)
	if err != nil {
		return err // too large: go-smtp answers 552 5.3.4
	}
	r.msgs.Add(1)
	reports, err := ParseReport(raw, r.cfg.MessageKey)
	switch {
	case errors.Is(err, ErrNotReport), errors.Is(err, ErrUnknownMessage):
		r.ignore.Add(1)
		r.log.Debug("message ignored", "reason", err)
		return nil
	case err != nil:
		r.ignore.Add(1)
		r.log.Warn("malformed report dropped", "err", err)
		return nil
	case len(reports) == 0:
		r.ignore.Add(1)
		return nil
	}
	ctx := context.Background()
	if p := r.ctx.Load(); p != nil {
		ctx = *p
	}
	if err := r.cfg.Handle(ctx, reports); err != nil {
		r.failed.Add(1)
		r.log.Warn("reports not handled; the sender will retry", "reports", len(reports), "err", err)
		return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "Temporarily unable to process the report, try again later"}
	}
	r.nRep.Add(int64(len(reports)))
	return nil
}
