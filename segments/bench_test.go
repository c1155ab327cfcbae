package segments

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/herald-dev/herald/internal/procstat"
)

// benchCSV is a file of n rows in several regions and formats, with tags, consent and
// an attribute.
func benchCSV(n int) []byte {
	var b bytes.Buffer
	b.WriteString("phone,name,tags,opted_in,plan\n")
	for i := range n {
		switch i % 3 {
		case 0:
			fmt.Fprintf(&b, "+66 81 %03d %04d,Name %d,\"vip;t%d\",yes,pro\n", i/10000%1000, i%10000, i, i%20)
		case 1:
			fmt.Fprintf(&b, "+62812%07d,Name %d,t%d,,free\n", i, i, i%20)
		default:
			fmt.Fprintf(&b, "+5511 9%08d,\"Name, %d\",,no,\n", i, i)
		}
	}
	return b.Bytes()
}

type nopSink struct{}

func (nopSink) ImportConsent(context.Context, []ConsentRow) error { return nil }

func BenchmarkImportCSV(b *testing.B) {
	const rows = 20000
	data := benchCSV(rows)
	ctx := context.Background()
	_, rdb, prefix := newStore(b)
	// CPU per row of this process and of redis-server: steadier than rows/s on a
	// shared machine.
	cpu := func(b *testing.B, f func()) {
		r0, err := redisCPU(ctx, rdb)
		if err != nil {
			b.Fatal(err)
		}
		c0 := procstat.CPU()
		f()
		n := rows * b.N // b.Loop sets b.N when it is done
		r1, err := redisCPU(ctx, rdb)
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64((procstat.CPU()-c0).Nanoseconds())/1e3/float64(n), "herald-µs/row")
		b.ReportMetric(float64((r1-r0).Nanoseconds())/1e3/float64(n), "redis-µs/row")
		b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "rows/s")
	}
	b.Run("new", func(b *testing.B) {
		b.SetBytes(int64(len(data)))
		i := 0
		cpu(b, func() {
			for b.Loop() {
				i++
				s := NewStore(rdb, fmt.Sprintf("%snew%d:", prefix, i))
				if _, err := s.ImportCSV(ctx, bytes.NewReader(data), ImportOptions{Consent: nopSink{}}); err != nil {
					b.Fatal(err)
				}
			}
		})
	})
	b.Run("unchanged", func(b *testing.B) {
		s := NewStore(rdb, prefix+"again:")
		if _, err := s.ImportCSV(ctx, bytes.NewReader(data), ImportOptions{}); err != nil {
			b.Fatal(err)
		}
		b.SetBytes(int64(len(data)))
		cpu(b, func() {
			for b.Loop() {
				rep, err := s.ImportCSV(ctx, bytes.NewReader(data), ImportOptions{})
				if err != nil || rep.Unchanged != rows {
					b.Fatal(rep, err)
				}
			}
		})
	})
}

// redisBitmap returns a Redis bitmap of n ids, each set with probability p.
func redisBitmap(rng *rand.Rand, n int, p float64) []byte {
	b := make([]byte, (n+7)/8)
	for id := range n {
		if rng.Float64() < p {
			b[id/8] |= 0x80 >> (id % 8)
		}
	}
	return b
}

func BenchmarkEvaluate(b *testing.B) {
	const contacts = 1_000_000
	s, rdb, _ := newStore(b)
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(1, 1))
	for k, p := range map[string]float64{s.kAll(): 1, s.kTag("vip"): 0.1, s.kTag("churned"): 0.2,
		s.kAttr(FieldCountry, "TH"): 0.4, s.kAttr(FieldCountry, "ID"): 0.3} {
		if err := rdb.Set(ctx, k, redisBitmap(rng, contacts, p), 0).Err(); err != nil {
			b.Fatal(err)
		}
	}
	for _, expr := range []string{"vip", "vip and (country:TH or country:ID) and not churned"} {
		b.Run(expr, func(b *testing.B) {
			for b.Loop() {
				if _, err := s.Evaluate(ctx, expr); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkBitmapFromRedis(b *testing.B) {
	rng := rand.New(rand.NewPCG(1, 1))
	for _, p := range []float64{0.001, 0.5} {
		data := redisBitmap(rng, 10_000_000, p)
		b.Run(fmt.Sprintf("10M ids density %g", p), func(b *testing.B) {
			b.SetBytes(int64(len(data)))
			for b.Loop() {
				bitmapFromRedis(data)
			}
		})
	}
}

func BenchmarkParse(b *testing.B) {
	for b.Loop() {
		if _, err := Parse("vip and (country:TH or country:ID) and not churned and locale in (th, en)"); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkParsePhone compares parsePhone (with its fast path) with phonenumbers alone
// on the same inputs; the last is national, which the fast path leaves to Parse.
func BenchmarkParsePhone(b *testing.B) {
	inputs := []string{"+66812345678", "+66 81 234 5678", "+6281234567890", "+5511987654321", "+4915112345678", "081 234 5678"}
	for _, in := range inputs {
		for _, p := range []struct {
			name  string
			parse func(s, region string) (phone, error)
		}{{"fast", parsePhone}, {"phonenumbers", parsePhoneSlow}} {
			b.Run(in+"/"+p.name, func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					if _, err := p.parse(in, "TH"); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

func BenchmarkSnapshotNext(b *testing.B) {
	rng := rand.New(rand.NewPCG(1, 1))
	sn := NewSnapshot(bitmapFromRedis(redisBitmap(rng, 10_000_000, 0.5)))
	buf := make([]uint32, 4096)
	var ids uint64
	for b.Loop() {
		var after uint32
		for {
			got := sn.Next(after, buf)
			if len(got) == 0 {
				break
			}
			ids += uint64(len(got))
			after = got[len(got)-1]
		}
	}
	b.ReportMetric(float64(ids)/b.Elapsed().Seconds(), "ids/s")
}
