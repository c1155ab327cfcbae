package app

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"golang.org/x/sync/errgroup"

	emailsandbox "github.com/herald-dev/herald/channels/email/sandbox"
	"github.com/herald-dev/herald/channels/line"
	linesandbox "github.com/herald-dev/herald/channels/line/sandbox"
	"github.com/herald-dev/herald/channels/sms"
	smssandbox "github.com/herald-dev/herald/channels/sms/sandbox"
	"github.com/herald-dev/herald/channels/telegram"
	tgsandbox "github.com/herald-dev/herald/channels/telegram/sandbox"
	"github.com/herald-dev/herald/channels/whatsapp/sandbox"
	"github.com/herald-dev/herald/dispatcher"
	"github.com/herald-dev/herald/internal/apikeys"
	"github.com/herald-dev/herald/internal/kafkax"
	"github.com/herald-dev/herald/internal/localstack"
	"github.com/herald-dev/herald/templates"
	"github.com/herald-dev/herald/throttle"
	"github.com/herald-dev/herald/webhooks"
)

// templatesCache re-reads a template's latest version number at most once a second.
func templatesCache(c *Components) dispatcher.Templates {
	return templates.NewCache(c.Templates, templates.CacheConfig{LatestTTL: time.Second})
}

// DevSandboxToken is the access token the dev sandbox accepts.
const DevSandboxToken = "sandbox-token"

// Stack is every Herald role in one process, with the WhatsApp sandbox, against servers
// named in its Config. `herald dev` and `herald demo` start the servers first
// (StartDev); the integration tests point it at theirs.
type Stack struct {
	Deps       *Deps
	Sandbox    *sandbox.Sandbox
	SandboxURL string
	ServeURL   string
	// SMSSandbox speaks the Twilio-style Messages API (account DevSMSAccount, auth token
	// DevSMSToken) at SMSSandboxURL, and posts signed callbacks to serve.
	SMSSandbox    *smssandbox.Sandbox
	SMSSandboxURL string
	// LINESandbox speaks the LINE Messaging API (token DevLINEToken) at LINESandboxURL,
	// and posts follow, unfollow and message events signed with DevLINESecret to serve.
	LINESandbox    *linesandbox.Sandbox
	LINESandboxURL string
	// EmailSandbox is an SMTP server (started by Run, at EmailSandboxAddr, no AUTH, no
	// TLS) whose bounces and complaints go to serve's receiver (HERALD_BOUNCE_LISTEN).
	// Replace it before Run for other behaviour (keep Addr and SinkAddr).
	EmailSandbox     *emailsandbox.Sandbox
	EmailSandboxAddr string
	// EmailSandboxListener is the open listener of EmailSandboxAddr: a test that replaces
	// EmailSandbox before Run hands it over (Config.Listener) rather than listening again.
	EmailSandboxListener net.Listener
	// TelegramSandbox speaks the Bot API (bot DevTelegramToken, @DevTelegramBot) at
	// TelegramSandboxURL; Run points its webhook at serve with the bot's secret token.
	TelegramSandbox    *tgsandbox.Sandbox
	TelegramSandboxURL string
	// NoWorker leaves the worker role out of Run (a benchmark runs it as its own process).
	NoWorker bool
	// NoSink and NoSandbox leave the sink and the WhatsApp sandbox out of Run (a benchmark
	// runs them as processes of their own; the sandbox's then listens at SandboxURL).
	NoSink, NoSandbox bool

	sandboxL, serveL, smsL net.Listener
	tgL                    net.Listener
	lineL                  net.Listener
	stops                  []func()
}

// NewStack listens for the sandbox and serve (serveAddr "" picks a free loopback port),
// migrates, and points the worker at the sandbox. Run starts the roles.
func NewStack(ctx context.Context, cfg Config, serveAddr string, sc sandbox.Config) (*Stack, error) {
	cfg.Defaults()
	if serveAddr == "" {
		serveAddr = "127.0.0.1:0"
	}
	s := &Stack{}
	sbl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	svl, err := net.Listen("tcp", serveAddr)
	if err != nil {
		sbl.Close()
		return nil, fmt.Errorf("serve: listen %s: %w", serveAddr, err)
	}
	sml, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		sbl.Close()
		svl.Close()
		return nil, err
	}
	tgl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		sbl.Close()
		svl.Close()
		sml.Close()
		return nil, err
	}
	s.sandboxL, s.serveL, s.smsL, s.tgL = sbl, svl, sml, tgl
	s.stops = append(s.stops, func() { sbl.Close(); svl.Close(); sml.Close(); tgl.Close() })
	s.TelegramSandboxURL = "http://" + tgl.Addr().String()
	if s.lineL, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
		s.Close()
		return nil, err
	}
	s.stops = append(s.stops, func() { s.lineL.Close() })
	s.LINESandboxURL = "http://" + s.lineL.Addr().String()
	s.SandboxURL = "http://" + sbl.Addr().String()
	s.SMSSandboxURL = "http://" + sml.Addr().String()
	s.ServeURL = "http://" + svl.Addr().String()
	if cfg.AppSecret == "" {
		cfg.AppSecret = "dev-app-secret"
	}
	if cfg.VerifyToken == "" {
		cfg.VerifyToken = "dev-verify-token"
	}
	if cfg.TrackToken == "" {
		cfg.TrackToken = "dev-track-token"
	}
	if cfg.ClickKey == "" {
		cfg.ClickKey, cfg.ClickBaseURL = "dev-click-key-not-secret", s.ServeURL
	}
	cfg.WhatsAppURL = s.SandboxURL
	cfg.SMSAPIURL = s.SMSSandboxURL
	cfg.TelegramAPIURL = s.TelegramSandboxURL
	cfg.LINEAPIURL = s.LINESandboxURL
	if cfg.BounceListen == "" {
		bl, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			s.Close()
			return nil, err
		}
		s.stops = append(s.stops, func() { bl.Close() })
		cfg.BounceListen, cfg.BounceListener = bl.Addr().String(), bl
	}
	esl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		s.Close()
		return nil, err
	}
	s.stops = append(s.stops, func() { esl.Close() })
	s.EmailSandboxAddr, s.EmailSandboxListener = esl.Addr().String(), esl
	if cfg.EmailMaxRetryAfter == 0 {
		cfg.EmailMaxRetryAfter = 2 * time.Second
	}
	cfg.HTTPAddr = svl.Addr().String()
	s.Deps = NewDeps(cfg)
	s.stops = append(s.stops, func() { _ = s.Deps.Close() })
	if _, err := Migrate(ctx, s.Deps); err != nil {
		s.Close()
		return nil, err
	}
	if sc.Token == "" {
		sc.Token = DevSandboxToken
	}
	sc.AppSecret = cfg.AppSecret
	sc.WebhookURL = s.ServeURL + "/webhooks/whatsapp"
	s.Sandbox = sandbox.New(sc, cfg.Logger)
	s.SMSSandbox = smssandbox.New(smssandbox.Config{AccountSID: DevSMSAccount, AuthToken: DevSMSToken,
		InboundURL: s.ServeURL + sms.InboundPath, DelayScale: sc.DelayScale, Seed: sc.Seed, CallbackConcurrency: 16,
		UndeliverableRate: sc.UndeliverableRate}, cfg.Logger)
	s.TelegramSandbox = tgsandbox.New(tgsandbox.Config{Bots: map[string]string{DevTelegramToken: DevTelegramBot}})
	s.LINESandbox = linesandbox.New(linesandbox.Config{Token: DevLINEToken, ChannelSecret: DevLINESecret,
		WebhookURL: s.ServeURL + line.WebhookPath, BlockedRate: sc.UndeliverableRate})
	s.EmailSandbox = emailsandbox.New(emailsandbox.Config{Addr: s.EmailSandboxAddr, Listener: esl, SinkAddr: cfg.BounceListen,
		BounceRate: sc.UndeliverableRate, Logger: cfg.Logger})
	return s, nil
}

// freeAddr returns a loopback address free a moment ago, for a server that listens later.
func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// Close releases what the stack holds, in reverse order.
func (s *Stack) Close() {
	for i := len(s.stops) - 1; i >= 0; i-- {
		s.stops[i]()
	}
	s.stops = nil
}

// Run runs the sandbox, serve, worker, sink and webhook deliverer until ctx is cancelled.
func (s *Stack) Run(ctx context.Context) error {
	g, ctx := errgroup.WithContext(ctx)
	if !s.NoSandbox {
		g.Go(func() error { return s.Sandbox.Run(ctx) })
		g.Go(func() error { return ServeHTTP(ctx, s.sandboxL, s.Sandbox.Handler()) })
	}
	g.Go(func() error { return s.SMSSandbox.Run(ctx) })
	if err := s.EmailSandbox.Start(ctx); err != nil {
		return err
	}
	g.Go(func() error {
		<-ctx.Done()
		return s.EmailSandbox.Close()
	})
	g.Go(func() error { return ServeHTTP(ctx, s.smsL, s.SMSSandbox.Handler()) })
	g.Go(func() error { return ServeHTTP(ctx, s.tgL, s.TelegramSandbox.Handler()) })
	if key, err := s.Deps.TelegramKey(ctx); err == nil {
		s.TelegramSandbox.SetWebhook(DevTelegramToken, s.ServeURL+telegram.WebhookPath, telegram.WebhookSecret(key, telegram.BotID(DevTelegramToken)))
	} else {
		s.Deps.Cfg.Logger.Warn("telegram sandbox: no webhook", "err", err)
	}
	g.Go(func() error { return ServeHTTP(ctx, s.lineL, s.LINESandbox.Handler()) })
	g.Go(func() error { return Serve(ctx, s.Deps, s.serveL) })
	if s.NoWorker {
		g.Go(func() error { return Scheduler(ctx, s.Deps) })
		if !s.Deps.Cfg.NoJourneys {
			g.Go(func() error { return Journeys(ctx, s.Deps) })
		}
	} else {
		g.Go(func() error { return Worker(ctx, s.Deps) })
	}
	if !s.NoSink {
		g.Go(func() error { return Sink(ctx, s.Deps) })
	}
	g.Go(func() error { return Deliver(ctx, s.Deps) })
	return g.Wait()
}

// DevOptions configure the local stack.
type DevOptions struct {
	DataDir  string         // where Redis and ClickHouse keep their files and the env file goes (.herald)
	HTTPAddr string         // serve's listen address (default a free loopback port)
	Sandbox  sandbox.Config // the WhatsApp sandbox (token, secret and webhook URL are filled in)
	Out      io.Writer      // where the HERALD_* values are printed (nil: nowhere)
}

// Dev is a Stack on servers of its own: private Redis and ClickHouse, embedded Kafka.
type Dev struct {
	*Stack
	Env     map[string]string
	EnvFile string
	// Redis and ClickHouse are the private servers (for what benchmarks read of them).
	Redis, ClickHouse *localstack.Server
	servers           []func()
}

// Close stops the stack, then the servers.
func (d *Dev) Close() {
	if d.Stack != nil {
		d.Stack.Close()
	}
	for i := len(d.servers) - 1; i >= 0; i-- {
		d.servers[i]()
	}
}

// StartDev installs what is missing, starts Redis, ClickHouse and embedded Kafka from a
// clean slate, and builds the stack on them. cfg's server addresses are replaced by the
// local ones.
func StartDev(ctx context.Context, cfg Config, o DevOptions) (*Dev, error) {
	// Development receivers are local: outbound webhooks may reach private addresses
	// unless the user said otherwise.
	if os.Getenv(webhooks.AllowPrivateEnv) == "" {
		_ = os.Setenv(webhooks.AllowPrivateEnv, "true")
	}
	cfg.Defaults()
	log := cfg.Logger.With("component", "dev")
	if o.DataDir == "" {
		o.DataDir = ".herald"
	}
	dir, err := filepath.Abs(o.DataDir)
	if err != nil {
		return nil, err
	}
	dev := &Dev{}
	ok := false
	defer func() {
		if !ok {
			dev.Close()
		}
	}()
	if err := localstack.EnsureInstalled(ctx, log); err != nil {
		return nil, err
	}
	keyFile := ""
	if cfg.LedgerKey == nil {
		if cfg.LedgerKey, keyFile, err = devLedgerKey(dir); err != nil {
			return nil, err
		}
	}
	// Kafka and Redis live in memory, so ClickHouse starts empty too: a rerun must not
	// mix a new campaign 1 with the events of the last run's campaign 1.
	for _, d := range []string{"redis", "clickhouse"} {
		if err := os.RemoveAll(filepath.Join(dir, d)); err != nil {
			return nil, fmt.Errorf("clean %s: %w", filepath.Join(dir, d), err)
		}
	}
	rs, err := localstack.StartRedis(ctx, filepath.Join(dir, "redis"))
	if err != nil {
		return nil, err
	}
	dev.Redis = rs
	dev.servers = append(dev.servers, func() { _ = rs.Stop() })
	chs, err := localstack.StartClickHouse(ctx, filepath.Join(dir, "clickhouse"))
	if err != nil {
		return nil, err
	}
	dev.ClickHouse = chs
	dev.servers = append(dev.servers, func() { _ = chs.Stop() })
	kf, err := kafkax.StartEmbedded(0)
	if err != nil {
		return nil, err
	}
	dev.servers = append(dev.servers, kf.Close)
	log.Info("local servers up", "redis", rs.Addr, "clickhouse", chs.Addr, "kafka", strings.Join(kf.Brokers, ","))
	cfg.KafkaBrokers = kf.Brokers
	cfg.RedisURL = "redis://" + rs.Addr + "/0"
	cfg.ClickHouseDSN = "clickhouse://" + chs.Addr + "/herald"
	if dev.Stack, err = NewStack(ctx, cfg, o.HTTPAddr, o.Sandbox); err != nil {
		return nil, err
	}
	c := dev.Deps.Cfg
	dev.Env = map[string]string{
		"HERALD_KAFKA_BROKERS":         strings.Join(c.KafkaBrokers, ","),
		"HERALD_REDIS_URL":             c.RedisURL,
		"HERALD_CLICKHOUSE_DSN":        c.ClickHouseDSN,
		"HERALD_WHATSAPP_API_URL":      c.WhatsAppURL,
		"HERALD_TELEGRAM_API_URL":      c.TelegramAPIURL,
		"HERALD_WHATSAPP_APP_SECRET":   c.AppSecret,
		"HERALD_WHATSAPP_VERIFY_TOKEN": c.VerifyToken,
		"HERALD_LINE_API_URL":          c.LINEAPIURL,
		"HERALD_REDIS_PREFIX":          c.Prefix,
		"HERALD_TOPIC_PREFIX":          c.TopicPrefix,
		"HERALD_CLICK_KEY":             c.ClickKey,
		"HERALD_CLICK_BASE_URL":        c.ClickBaseURL,
		"HERALD_TRACK_TOKEN":           c.TrackToken,
		"HERALD_LEDGER_PUBLIC_KEY":     throttle.EncodeLedgerPublicKey(c.LedgerKey.Public().(ed25519.PublicKey)),
	}
	if keyFile != "" {
		dev.Env["HERALD_LEDGER_SIGNING_KEY"] = keyFile
	}
	if c.API != nil {
		// An admin key of the /v1 API for the second shell's curl (a fresh one each run:
		// the store starts empty).
		comp, err := dev.Deps.Components()
		if err != nil {
			return nil, err
		}
		k, err := comp.Keys.Create(ctx, apikeys.Spec{Name: "dev", Role: apikeys.Admin})
		if err != nil {
			return nil, err
		}
		dev.Env["HERALD_API_URL"] = dev.ServeURL
		dev.Env["HERALD_API_KEY"] = k.Secret
	}
	dev.EnvFile = filepath.Join(dir, "env")
	if err := os.WriteFile(dev.EnvFile, []byte(dev.envText()), 0o600); err != nil {
		return nil, err
	}
	if o.Out != nil {
		fmt.Fprintf(o.Out, "Herald dev stack is up.\n  webhooks  %s/webhooks/whatsapp\n  API       %s/v1 (OpenAPI at /v1/openapi.json; an admin key is HERALD_API_KEY below)\n  metrics   %s/metrics\n  sandbox   %s (token %q)\n\nIn another shell:  source %s   (or set these)\n%s\n",
			dev.ServeURL, dev.ServeURL, dev.ServeURL, dev.SandboxURL, DevSandboxToken, dev.EnvFile, dev.envText())
		if c.API != nil && c.Console != nil {
			fmt.Fprintf(o.Out, "Web console: %s/console/ (log in with HERALD_API_KEY above)\n", dev.ServeURL)
		}
	}
	ok = true
	return dev, nil
}

// devLedgerKey returns the checkpoint signing key kept in dir/ledger.key, made (with its
// public half in dir/ledger.pub) when missing, and the key file's path.
func devLedgerKey(dir string) (ed25519.PrivateKey, string, error) {
	path := filepath.Join(dir, "ledger.key")
	if _, err := os.Stat(path); err == nil {
		key, err := throttle.ParseLedgerKey(path)
		return key, path, err
	}
	key, err := throttle.GenerateLedgerKey()
	if err != nil {
		return nil, "", err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, "", err
	}
	if err := os.WriteFile(path, []byte(throttle.EncodeLedgerKey(key)+"\n"), 0o600); err != nil {
		return nil, "", err
	}
	pub := throttle.EncodeLedgerPublicKey(key.Public().(ed25519.PublicKey))
	if err := os.WriteFile(filepath.Join(dir, "ledger.pub"), []byte(pub+"\n"), 0o644); err != nil {
		return nil, "", err
	}
	return key, path, nil
}

func (d *Dev) envText() string {
	keys := make([]string, 0, len(d.Env))
	for k := range d.Env {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "export %s=%q\n", k, d.Env[k])
	}
	return b.String()
}
