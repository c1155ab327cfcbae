package sandbox

// splitmix64 is a small, fast generator: one per accepted message, seeded from the
// sandbox seed and the message sequence, so choices are reproducible without a shared lock.
type splitmix64 struct{ s uint64 }

func newRNG(seed int64, seq uint64) *splitmix64 {
	return &splitmix64{s: mix64(uint64(seed) ^ mix64(seq))}
}

func (r *splitmix64) next() uint64 {
	r.s += 0x9e3779b97f4a7c15
	return mix64(r.s)
}

// float returns a number in [0, 1).
func (r *splitmix64) float() float64 { return unit(r.next()) }

func mix64(z uint64) uint64 {
	z = (z ^ z>>30) * 0xbf58476d1ce4e5b9
	z = (z ^ z>>27) * 0x94d049bb133111eb
	return z ^ z>>31
}

// unit maps a hash to [0, 1).
func unit(h uint64) float64 { return float64(h>>11) / (1 << 53) }

// hashString is FNV-1a over salt and s, finalized so that close inputs spread out.
func hashString(salt byte, s string) uint64 {
	const prime = 1099511628211
	h := uint64(14695981039346656037)
	h = (h ^ uint64(salt)) * prime
	for i := 0; i < len(s); i++ {
		h = (h ^ uint64(s[i])) * prime
	}
	return mix64(h)
}
