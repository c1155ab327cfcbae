package throttle

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// ReasonFrequencyCap is the skip reason of a contact who already got as many messages of
// the category as a cap allows.
const ReasonFrequencyCap = "frequency_cap"

// Cap limits how many messages of a category (the consent purpose: marketing, utility)
// one contact gets in a rolling window, e.g. 1 marketing message per 72h.
type Cap struct {
	Category string
	Max      int
	Window   time.Duration
}

func (c Cap) String() string { return fmt.Sprintf("%s:%d/%s", c.Category, c.Max, c.Window) }

// ParseCaps reads caps written like "marketing:1/72h,marketing:3/168h".
func ParseCaps(s string) ([]Cap, error) {
	var out []Cap
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		cat, rest, ok := strings.Cut(part, ":")
		num, win, ok2 := strings.Cut(rest, "/")
		n, err := strconv.Atoi(num)
		d, err2 := time.ParseDuration(win)
		if !ok || !ok2 || cat == "" || err != nil || err2 != nil || n < 1 || d <= 0 {
			return nil, fmt.Errorf("frequency cap %q: want category:count/duration, e.g. marketing:1/72h", part)
		}
		out = append(out, Cap{Category: cat, Max: n, Window: d})
	}
	return out, nil
}
