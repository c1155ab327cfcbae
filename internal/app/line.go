package app

import (
	"context"
	"sync"

	"github.com/herald-dev/herald/channels/line"
	"github.com/herald-dev/herald/dispatcher"
)

// Dev LINE channel of the stack's sandbox.
const (
	DevLINEToken  = "dev-line-channel-access-token"
	DevLINESecret = "dev-line-channel-secret"
)

// lineSenders sends through the LINE adapter (the sender's token is its channel access
// token) and hands the adapter each sender's channel secret, the key its webhooks are
// signed with, before its first send and again when it changes.
type lineSenders struct {
	ch   *line.Channel
	mu   sync.RWMutex
	seen map[string]string // sender id → channel secret handed over
}

var (
	_ dispatcher.BatchChannel = (*lineSenders)(nil)
	_ dispatcher.BatchRater   = (*lineSenders)(nil)
)

func (a *lineSenders) Send(ctx context.Context, s dispatcher.Sender, m dispatcher.Message) (string, error) {
	a.ensure(s)
	return a.ch.Send(ctx, s, m)
}

func (a *lineSenders) SendBatch(ctx context.Context, s dispatcher.Sender, ms []dispatcher.Message) []dispatcher.BatchResult {
	a.ensure(s)
	return a.ch.SendBatch(ctx, s, ms)
}

func (a *lineSenders) MaxBatch() int                        { return a.ch.MaxBatch() }
func (a *lineSenders) BatchKey(m dispatcher.Message) string { return a.ch.BatchKey(m) }
func (a *lineSenders) BatchRate() float64                   { return a.ch.BatchRate() }

func (a *lineSenders) ensure(s dispatcher.Sender) {
	secret := s.Settings["channel_secret"]
	a.mu.RLock()
	old, ok := a.seen[s.ID]
	a.mu.RUnlock()
	if ok && old == secret {
		return
	}
	a.mu.Lock()
	a.ch.SetSecret(s.ID, secret)
	a.seen[s.ID] = secret
	a.mu.Unlock()
}

// refresh hands the adapter every LINE sender's secret from the registry (serve does it
// when a webhook verifies under none it knows).
func (a *lineSenders) refresh(ctx context.Context, senders *dispatcher.Senders) error {
	all, err := senders.List(ctx)
	if err != nil {
		return err
	}
	for _, s := range all {
		if s.Channel == line.ChannelName {
			a.ensure(s)
		}
	}
	return nil
}

// LINE returns the process's LINE adapter (one per Deps).
func (d *Deps) LINE() (*lineSenders, error) {
	d.lineOnce.Do(func() {
		var ch *line.Channel
		ch, d.lineErr = line.New(line.Config{BaseURL: d.Cfg.LINEAPIURL})
		if d.lineErr == nil {
			d.line = &lineSenders{ch: ch, seen: map[string]string{}}
		}
	})
	return d.line, d.lineErr
}
