package cli

import (
	"github.com/urfave/cli/v2"

	"github.com/herald-dev/herald/channels/whatsapp/sandbox"
)

// outagePlan reads herald sandbox's --outage-* flags: no plan unless --outage-at,
// --outage-for or --outage-mode is given.
func outagePlan(c *cli.Context) (sandbox.OutagePlan, error) {
	if !c.IsSet("outage-at") && !c.IsSet("outage-for") && !c.IsSet("outage-mode") {
		return sandbox.OutagePlan{}, nil
	}
	mode := sandbox.OutageRefuse
	if s := c.String("outage-mode"); s != "" {
		m, err := sandbox.ParseOutageMode(s)
		if err != nil {
			return sandbox.OutagePlan{}, usage("--outage-mode %q: want refuse or stall", s)
		}
		mode = m
	}
	p := sandbox.OutagePlan{Mode: mode, At: c.Duration("outage-at"), For: c.Duration("outage-for"),
		Code: c.Int("outage-code"), StallMax: c.Duration("outage-stall-max")}
	if err := p.Validate(); err != nil {
		return p, usage("%v", err)
	}
	return p, nil
}
