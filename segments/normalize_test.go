package segments

import "testing"

// isNormTag is exactly "normTag returns s unchanged".
func FuzzNormTag(f *testing.F) {
	for _, s := range []string{"vip", "a_b", "a__b", "_a", "a_", "--", "-a-", "VIP", "a b", "ลูกค้า", "x1", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if !isNormTag(s) {
			return
		}
		// The slow path: what normTag computed before its shortcut.
		n, err := normTag(" " + s + " ")
		if err != nil || n != s {
			t.Fatalf("isNormTag(%q) but normTag gives %q, %v", s, n, err)
		}
	})
}
