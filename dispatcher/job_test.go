package dispatcher

import (
	"bytes"
	"testing"
	"time"
)

func TestJobRoundTrip(t *testing.T) {
	for _, j := range []Job{
		{Campaign: "1", Contact: 1, Sender: "106540352242922"},
		{Campaign: "cmp-42", Contact: 1<<32 - 1, Sender: "s", Attempt: 3, NotBefore: time.UnixMilli(1750030073123)},
	} {
		got, err := UnmarshalJob(j.Marshal())
		if err != nil {
			t.Fatal(err)
		}
		if got.Campaign != j.Campaign || got.Contact != j.Contact || got.Sender != j.Sender || got.Attempt != j.Attempt || !got.NotBefore.Equal(j.NotBefore) {
			t.Fatalf("round trip: got %+v, want %+v", got, j)
		}
	}
	for _, bad := range [][]byte{nil, {2}, {1}, {1, 1, 'a'}, {1, 1, 'a', 0, 1, 's', 0, 0}, append(Job{Campaign: "c", Contact: 1, Sender: "s"}.Marshal(), 0)} {
		if _, err := UnmarshalJob(bad); err == nil {
			t.Errorf("UnmarshalJob(%v) accepted malformed input", bad)
		}
	}
}

func FuzzUnmarshalJob(f *testing.F) {
	f.Add(Job{Campaign: "1", Contact: 9, Sender: "106540352242922", Attempt: 1}.Marshal())
	f.Add([]byte{1, 0})
	f.Add(Job{Campaign: "1", Contact: 9, Sender: "s", Stage: 1, From: "whatsapp", Reason: "permanent_failure", Code: 131026}.Marshal())
	f.Fuzz(func(t *testing.T, b []byte) {
		j, err := UnmarshalJob(b)
		if err != nil {
			return
		}
		if again := j.Marshal(); !bytes.Equal(again, b) {
			// Only canonical encodings are accepted, so a decoded job re-encodes to its input.
			if j2, err := UnmarshalJob(again); err != nil || j2 != j {
				t.Fatalf("re-encoding %+v changed it", j)
			}
		}
	})
}

func TestDryRunETAFollowsTheTier(t *testing.T) {
	for _, c := range []struct {
		p    SenderPlan
		want time.Duration
	}{
		{SenderPlan{Rate: 80, Contacts: 800}, 10 * time.Second},
		{SenderPlan{Rate: 80, Contacts: 800, Tier: 1000}, 10 * time.Second},
		{SenderPlan{Rate: 80, Contacts: 2500, Tier: 1000}, 48*time.Hour + 6250*time.Millisecond},
		{SenderPlan{Rate: 100, Contacts: 2000, Tier: 1000}, 24*time.Hour + 10*time.Second},
	} {
		if got := c.p.eta(); got != c.want {
			t.Errorf("%+v: ETA %v, want %v", c.p, got, c.want)
		}
	}
}
