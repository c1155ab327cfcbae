package templates

import (
	"testing"
	"time"

	"github.com/osteele/tuesday"
)

// FuzzStrftime: the parsed format gives tuesday's output for any format and time.
func FuzzStrftime(f *testing.F) {
	for _, s := range []string{"%a, %b %d, %y", "%Y-%m-%d %H:%M:%S %z %Z", "%e %B %Y %l:%M %p %P %j %k %I %A %h %F %%",
		"%-d/%-m %_H %^b %#p %:z %::z %3N %10Y %EY %Oy %c %D %v %s %U", "plain", "100% %", "%"} {
		f.Add(s, int64(1740800000), uint8(0))
		f.Add(s, int64(-62135596800-86400), uint8(1))
		f.Add(s, int64(1e11), uint8(2))
	}
	zones := []string{"UTC", "Asia/Bangkok", "America/St_Johns", "Asia/Kathmandu"}
	f.Fuzz(func(t *testing.T, format string, unix int64, zone uint8) {
		if unix > 1e13 || unix < -1e13 || len(format) > 200 {
			return
		}
		loc, err := loadZone(zones[int(zone)%len(zones)])
		if err != nil {
			t.Fatal(err)
		}
		tm := time.Unix(unix, 0).In(loc)
		p, err := compileStrftime(format)
		if err != nil {
			return // widths checkStrftime refuses
		}
		want, _ := tuesday.Strftime(format, tm)
		if got := p.format(tm, nil); got != want {
			t.Fatalf("%q at %v: got %q, tuesday %q", format, tm, got, want)
		}
	})
}
