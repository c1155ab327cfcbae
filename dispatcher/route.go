package dispatcher

import (
	"context"
	"fmt"
	"sort"

	"github.com/RoaringBitmap/roaring/v2"
)

// Routing names how a campaign spreads its audience over its senders.
const (
	RouteRoundRobin = "round_robin" // by contact id: even and stable
	RouteCountry    = "country"     // by the contact's country (senders' Countries), round-robin within
)

// router maps a contact to the sender of its jobs. It is deterministic for a given set of
// senders, so a fan-out resumed from its checkpoint routes every contact as before.
type router func(contact uint32) string

// routerFor builds the campaign's router. Country routing sends a contact to the senders
// that list its country; contacts of other countries (or none) go to the senders that
// list no country, or, when every sender lists some, to all of them.
func (c *Campaigns) routerFor(ctx context.Context, cp Campaign, senders *Senders) (router, error) {
	if cp.Routing != RouteCountry {
		return cp.SenderFor, nil
	}
	byCountry := map[string][]string{}
	var open []string
	for _, id := range cp.Senders {
		s, err := senders.Get(ctx, id)
		if err != nil {
			return nil, err
		}
		if len(s.Countries) == 0 {
			open = append(open, id)
		}
		for _, cc := range s.Countries {
			byCountry[cc] = append(byCountry[cc], id)
		}
	}
	if len(open) == 0 {
		open = cp.Senders
	}
	countries := make([]string, 0, len(byCountry))
	for cc := range byCountry {
		countries = append(countries, cc)
	}
	sort.Strings(countries)
	members := make([]*roaring.Bitmap, len(countries))
	for i, cc := range countries {
		bm, err := c.segments.Evaluate(ctx, "country:"+cc)
		if err != nil {
			return nil, fmt.Errorf("campaign %s: route by country %s: %w", cp.ID, cc, err)
		}
		members[i] = bm
	}
	return func(contact uint32) string {
		for i, bm := range members {
			if bm.Contains(contact) {
				list := byCountry[countries[i]]
				return list[int(contact)%len(list)]
			}
		}
		return open[int(contact)%len(open)]
	}, nil
}
