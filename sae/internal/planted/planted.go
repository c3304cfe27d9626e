// Package planted makes data from a known dictionary, for the tests that
// ask an SAE to recover it (on the CPU and on the GPU).
package planted

import (
	"math"
	"math/rand/v2"
)

// Data makes rows that are sparse non-negative sums of a known dictionary
// of unit atoms (each atom on with probability p, magnitude uniform in
// [0.5, 2)), plus a little noise. dict is [atoms, d].
func Data(seed uint64, rows, d, atoms int, p float64) (x []float32, dict []float32) {
	rng := rand.New(rand.NewPCG(seed, 99))
	dict = make([]float32, atoms*d)
	for a := 0; a < atoms; a++ {
		var ss float64
		for i := 0; i < d; i++ {
			v := rng.NormFloat64()
			dict[a*d+i] = float32(v)
			ss += v * v
		}
		for i := 0; i < d; i++ {
			dict[a*d+i] /= float32(math.Sqrt(ss))
		}
	}
	x = make([]float32, rows*d)
	for r := 0; r < rows; r++ {
		row := x[r*d : (r+1)*d]
		for a := 0; a < atoms; a++ {
			if rng.Float64() < p {
				c := float32(0.5 + 1.5*rng.Float64())
				for i, v := range dict[a*d : (a+1)*d] {
					row[i] += c * v
				}
			}
		}
		for i := range row {
			row[i] += float32(0.01 * rng.NormFloat64())
		}
	}
	return x, dict
}

// Recovered counts the atoms whose best decoder row (dec is [latents, d])
// has cosine >= 0.9 with them.
func Recovered(dec []float32, latents, d int, dict []float32, atoms int) int {
	n := 0
	for a := 0; a < atoms; a++ {
		at := dict[a*d : (a+1)*d]
		best := -1.0
		for j := 0; j < latents; j++ {
			row := dec[j*d : (j+1)*d]
			var dt, nn float64
			for i := range row {
				dt += float64(row[i]) * float64(at[i])
				nn += float64(row[i]) * float64(row[i])
			}
			if nn > 0 {
				best = math.Max(best, dt/math.Sqrt(nn))
			}
		}
		if best >= 0.9 {
			n++
		}
	}
	return n
}
