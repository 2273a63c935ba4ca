package simulator

import "math"

// rng is a small splitmix64 generator. The simulator carries one per device
// (8 bytes, no allocation) so a device's stream depends only on the seed and
// its id, never on which other devices are simulated or in what order. It is
// written out here rather than taken from math/rand so the stream stays
// byte-identical across Go releases.
type rng struct{ s uint64 }

func (r *rng) next() uint64 {
	r.s += 0x9e3779b97f4a7c15
	return mix64(r.s)
}

// mix64 is splitmix64's finaliser: a bijective avalanche of x.
func mix64(z uint64) uint64 {
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}

// hash combines values into one well-mixed 64-bit hash; pure functions of
// the seed and the simulated time (collection rounds, rain) are built on it.
func hash(vs ...uint64) uint64 {
	h := uint64(0x6a09e667f3bcc909)
	for _, v := range vs {
		h = mix64(h ^ (v + 0x9e3779b97f4a7c15))
	}
	return h
}

// unit maps a hash to [0, 1).
func unit(h uint64) float64 { return float64(h>>11) * 0x1p-53 }

// fnv64 is FNV-1a over s, used to key a device's randomness by its id.
func fnv64(s string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= 1099511628211
	}
	return h
}

// float returns a uniform value in [0, 1).
func (r *rng) float() float64 { return float64(r.next()>>11) * 0x1p-53 }

// between returns a uniform value in [a, b).
func (r *rng) between(a, b float64) float64 { return a + (b-a)*r.float() }

// intn returns a uniform integer in [0, n); n must be below 2^32.
func (r *rng) intn(n int) int { return int(((r.next() >> 32) * uint64(n)) >> 32) }

// chance reports true with probability p.
func (r *rng) chance(p float64) bool { return r.float() < p }

// norm returns an approximately standard normal value (Irwin–Hall of four
// uniforms, bounded at ±3.5σ: sensor noise without absurd outliers).
func (r *rng) norm() float64 {
	return (r.float() + r.float() + r.float() + r.float() - 2) * 1.7320508075688772
}

// poisson returns a Poisson-distributed count with mean lambda.
func (r *rng) poisson(lambda float64) int {
	if lambda <= 0 {
		return 0
	}
	if lambda > 30 {
		n := int(math.Round(lambda + math.Sqrt(lambda)*r.norm()))
		return max(n, 0)
	}
	l := math.Exp(-lambda)
	k, p := 0, r.float()
	for p > l {
		k++
		p *= r.float()
	}
	return k
}

// happens reports whether an event with the given rate per day occurs in
// dtMs milliseconds (a Poisson process observed at report times).
func (r *rng) happens(perDay float64, dtMs int64) bool {
	if perDay <= 0 || dtMs <= 0 {
		return false
	}
	x := perDay * float64(dtMs) / dayMs
	p := x * (1 - x/2) // 1 − e^−x, to within x³/6
	if x > 1e-3 {
		p = -math.Expm1(-x)
	}
	return r.float() < p
}
