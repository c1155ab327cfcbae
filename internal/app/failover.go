package app

import "github.com/herald-dev/herald/dispatcher"

// Channel failover's wiring: the records every worker and serve share (which contacts
// fell back, whose first send was delivered) and the per-sender circuit breakers.

// failover returns the failover records, requests going to the delayed set.
func (d *Deps) failover(c *Components) *dispatcher.Failover {
	rdb, err := d.Redis()
	if err != nil {
		return nil
	}
	return dispatcher.NewFailover(rdb, d.Cfg.Prefix, c.Delayed)
}

// breaker returns the per-(channel, sender) circuit breakers, tuned by Config.Breaker.
func (d *Deps) breaker() *dispatcher.Breaker {
	rdb, err := d.Redis()
	if err != nil {
		return nil
	}
	return dispatcher.NewBreaker(rdb, d.Cfg.Prefix, d.Cfg.Breaker)
}
