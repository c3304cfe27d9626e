//go:build ignore

// gen_kernels writes kernels_amd64.s: the vector loops of the fused
// attention's softmax, in AVX-512 (16 lanes) and AVX2/FMA (8 lanes):
//
//	func max<ISA>(x *float32, n int) float32
//	func expShiftSum<ISA>(x *float32, n int, m float32) float32
//	func colMax<ISA>(x *float32, n, stride int, m *float32)
//	func colExpShiftSum<ISA>(x *float32, n, stride int, shift, sum *float32)
//
// The column forms work on one vector of lanes of n rows laid out stride
// floats apart (a block of scores with the queries along the lanes, as the
// fused attention keeps them): colMax sets m[c] = max(m[c], x[p·stride+c]),
// colExpShiftSum sets x[p·stride+c] = e^(x[p·stride+c] − shift[c]) and adds
// the column's new values to sum[c], for c below one vector's lanes.
//
// n is a multiple of two vectors for max, of the vectors an iteration
// takes for expShiftSum (two of AVX-512, one of AVX2); the Go wrappers in
// vmath.go do the tails. expShiftSum sets x[i] = e^(x[i]-m) with the algorithm of
// Exp (Cody–Waite reduction, degree-6 polynomial, 2^n through the exponent
// bits) and returns the sum; -Inf gives 0. AVX-512 rounds subnormal
// results as Exp does; AVX2 flushes results below the normal range
// (arguments under -87.33) to 0. Run with `go generate`.
package main

import (
	"bytes"
	"fmt"
	"math"
	"os"
)

var out bytes.Buffer

func p(format string, args ...any) { fmt.Fprintf(&out, "\t"+format+"\n", args...) }
func label(name string)            { fmt.Fprintf(&out, "%s:\n", name) }

type isa struct {
	name  string // function-name suffix
	reg   string // Y or Z
	width int    // lanes
}

var (
	avx2   = isa{name: "AVX2", reg: "Y", width: 8}
	avx512 = isa{name: "AVX512", reg: "Z", width: 16}
)

func (s isa) r(i int) string { return fmt.Sprintf("%s%d", s.reg, i) }

// bcast loads a float32 constant into every lane of register r (through
// AX and X15, which the loops do not use otherwise).
//
// The move into X15 is VMOVD, VEX-encoded: a legacy-SSE MOVD after AVX
// code costs a state transition on every call.
func bcast(s isa, r string, v float32) {
	p("MOVL $0x%08x, AX", math.Float32bits(v))
	if s.width == 16 {
		p("VPBROADCASTD AX, %s", r)
		return
	}
	p("VMOVD AX, X15")
	p("VBROADCASTSS X15, %s", r)
}

// hreduce folds the lanes of register acc with op (VMAXPS or VADDPS) into
// X<acc> lane 0 and stores it at ret.
func hreduce(s isa, op string, acc int, ret string) {
	if s.width == 16 {
		p("VEXTRACTF64X4 $1, Z%d, Y14", acc)
		p("%s Y14, Y%d, Y%d", op, acc, acc)
	}
	p("VEXTRACTF128 $1, Y%d, X14", acc)
	p("%s X14, X%d, X%d", op, acc, acc)
	p("VPERMILPS $0x4e, X%d, X14", acc)
	p("%s X14, X%d, X%d", op, acc, acc)
	p("VPERMILPS $0xb1, X%d, X14", acc)
	p("%s X14, X%d, X%d", op, acc, acc)
	p("VZEROUPPER")
	p("MOVSS X%d, %s", acc, ret)
}

func maxKernel(s isa) {
	fmt.Fprintf(&out, "\n// func max%s(x *float32, n int) float32\n", s.name)
	fmt.Fprintf(&out, "TEXT ·max%s(SB), NOSPLIT, $0-20\n", s.name)
	p("MOVQ x+0(FP), SI")
	p("MOVQ n+8(FP), CX")
	bcast(s, s.r(0), float32(math.Inf(-1)))
	p("VMOVAPS %s, %s", s.r(0), s.r(1))
	label("max" + s.name + "loop")
	p("CMPQ CX, $0")
	p("JLE max%sdone", s.name)
	p("VMAXPS (SI), %s, %s", s.r(0), s.r(0))
	p("VMAXPS %d(SI), %s, %s", 4*s.width, s.r(1), s.r(1))
	p("ADDQ $%d, SI", 8*s.width)
	p("SUBQ $%d, CX", 2*s.width)
	p("JMP max%sloop", s.name)
	label("max" + s.name + "done")
	p("VMAXPS %s, %s, %s", s.r(1), s.r(0), s.r(0))
	hreduce(s, "VMAXPS", 0, "ret+16(FP)")
	p("RET")
}

// expKernel: registers 0-1 hold the sums, 2 m, 3 log2e, 4-5 ln2 in two
// parts, 6-11 the polynomial's coefficients 1/720 .. 1, 12 the threshold.
// AVX-512 takes two vectors an iteration in 16-19 and 20-23 (x, t, r, q),
// masks in K1-K2; AVX2, with 16 registers, one vector in 13-15 and 1.
func expKernel(s isa) {
	fmt.Fprintf(&out, "\n// func expShiftSum%s(x *float32, n int, m float32) float32\n", s.name)
	fmt.Fprintf(&out, "TEXT ·expShiftSum%s(SB), NOSPLIT, $0-28\n", s.name)
	p("MOVQ x+0(FP), SI")
	p("MOVQ n+8(FP), CX")
	p("VBROADCASTSS m+16(FP), %s", s.r(2))
	zero := "VXORPS"
	if s.width == 16 {
		zero = "VPXORD" // VXORPS on Z registers needs AVX512DQ
	}
	p("%s %s, %s, %s", zero, s.r(0), s.r(0), s.r(0))
	p("%s %s, %s, %s", zero, s.r(1), s.r(1), s.r(1))
	bcast(s, s.r(3), 1.44269504088896341)
	bcast(s, s.r(4), 0.693359375)
	bcast(s, s.r(5), -2.12194440e-4)
	for i, c := range []float32{1.0 / 720, 1.0 / 120, 1.0 / 24, 1.0 / 6, 1.0 / 2, 1} {
		bcast(s, s.r(6+i), c)
	}
	if s.width == 16 {
		bcast(s, s.r(12), -110) // below it every result rounds to 0
	} else {
		bcast(s, s.r(12), -87.33654)
	}
	vectors := 2
	if s.width == 8 {
		vectors = 1
	}
	label("exp" + s.name + "loop")
	p("CMPQ CX, $0")
	p("JLE exp%sdone", s.name)
	for v := 0; v < vectors; v++ {
		x, t, r, q := s.r(16+4*v), s.r(17+4*v), s.r(18+4*v), s.r(19+4*v)
		if s.width == 8 {
			x, t, r, q = s.r(13), s.r(14), s.r(15), s.r(1)
		}
		off := 4 * s.width * v
		p("VMOVUPS %d(SI), %s", off, x)
		p("VSUBPS %s, %s, %s", s.r(2), x, x) // x -= m
		if s.width == 8 {
			// Above 88 the exponent add would overflow: saturate at e^88
			// (a constant in memory: AVX2 has no register left).
			p("VMINPS expHi<>(SB), %s, %s", x, x)
		}
		if s.width == 16 {
			expVectorAVX512(s, x, t, r, q, off, v)
			continue
		}
		p("VMULPS %s, %s, %s", s.r(3), x, t) // t = x·log2e
		p("VCVTPS2DQ %s, %s", t, t)          // n = round(t)
		p("VCVTDQ2PS %s, %s", t, r)          // float(n)
		p("VMOVAPS %s, %s", x, q)
		p("VFNMADD231PS %s, %s, %s", s.r(4), r, q) // q = x − n·ln2hi
		p("VFNMADD231PS %s, %s, %s", s.r(5), r, q) // q −= n·ln2lo
		p("VMOVAPS %s, %s", s.r(6), r)             // p = 1/720
		for i := 7; i <= 11; i++ {
			p("VFMADD213PS %s, %s, %s", s.r(i), q, r) // p = p·q + c
		}
		p("VFMADD213PS %s, %s, %s", s.r(11), q, r)   // p = p·q + 1
		p("VPSLLD $23, %s, %s", t, t)                // n << 23
		p("VPADDD %s, %s, %s", t, r, r)              // p·2^n
		p("VCMPPS $0x1d, %s, %s, %s", s.r(12), x, t) // x ≥ threshold
		p("VANDPS %s, %s, %s", t, r, r)
		p("VMOVUPS %s, %d(SI)", r, off)
		p("VADDPS %s, %s, %s", r, s.r(v), s.r(v))
	}
	p("ADDQ $%d, SI", 4*s.width*vectors)
	p("SUBQ $%d, CX", s.width*vectors)
	p("JMP exp%sloop", s.name)
	label("exp" + s.name + "done")
	if vectors == 2 {
		p("VADDPS %s, %s, %s", s.r(1), s.r(0), s.r(0))
	}
	hreduce(s, "VADDPS", 0, "ret+24(FP)")
	p("RET")
}

// expVectorAVX512 is one vector of the AVX-512 loop: x is clamped at −110
// (so −Inf gives 0), n = round(x·log2e) stays a float, and VSCALEFPS
// computes p·2^n, subnormal and zero results included, where the AVX2 loop
// adds n to the exponent bits and masks results below the normal range.
func expVectorAVX512(s isa, x, t, r, q string, off, v int) {
	p("VMAXPS %s, %s, %s", s.r(12), x, x) // clamp
	p("VMULPS %s, %s, %s", s.r(3), x, t)  // t = x·log2e
	p("VRNDSCALEPS $0, %s, %s", t, t)     // n = round(t), nearest even
	p("VMOVAPS %s, %s", x, q)
	p("VFNMADD231PS %s, %s, %s", s.r(4), t, q) // q = x − n·ln2hi
	p("VFNMADD231PS %s, %s, %s", s.r(5), t, q) // q −= n·ln2lo
	p("VMOVAPS %s, %s", s.r(6), r)             // p = 1/720
	for i := 7; i <= 11; i++ {
		p("VFMADD213PS %s, %s, %s", s.r(i), q, r) // p = p·q + c
	}
	p("VFMADD213PS %s, %s, %s", s.r(11), q, r) // p = p·q + 1
	p("VSCALEFPS %s, %s, %s", t, r, r)         // p·2^n
	p("VMOVUPS %s, %d(SI)", r, off)
	p("VADDPS %s, %s, %s", r, s.r(v), s.r(v))
}

// colMaxKernel: m in register 0.
func colMaxKernel(s isa) {
	fmt.Fprintf(&out, "\n// func colMax%s(x *float32, n, stride int, m *float32)\n", s.name)
	fmt.Fprintf(&out, "TEXT ·colMax%s(SB), NOSPLIT, $0-32\n", s.name)
	p("MOVQ x+0(FP), SI")
	p("MOVQ n+8(FP), CX")
	p("MOVQ stride+16(FP), DX")
	p("SHLQ $2, DX")
	p("MOVQ m+24(FP), DI")
	p("VMOVUPS (DI), %s", s.r(0))
	label("colmax" + s.name + "loop")
	p("CMPQ CX, $0")
	p("JLE colmax%sdone", s.name)
	p("VMAXPS (SI), %s, %s", s.r(0), s.r(0))
	p("ADDQ DX, SI")
	p("DECQ CX")
	p("JMP colmax%sloop", s.name)
	label("colmax" + s.name + "done")
	p("VMOVUPS %s, (DI)", s.r(0))
	p("VZEROUPPER")
	p("RET")
}

// colExpKernel: registers as expKernel's with one vector a row: the sum
// in 0, the shift in 2.
func colExpKernel(s isa) {
	fmt.Fprintf(&out, "\n// func colExpShiftSum%s(x *float32, n, stride int, shift, sum *float32)\n", s.name)
	fmt.Fprintf(&out, "TEXT ·colExpShiftSum%s(SB), NOSPLIT, $0-40\n", s.name)
	p("MOVQ x+0(FP), SI")
	p("MOVQ n+8(FP), CX")
	p("MOVQ stride+16(FP), DX")
	p("SHLQ $2, DX")
	p("MOVQ shift+24(FP), DI")
	p("VMOVUPS (DI), %s", s.r(2))
	p("MOVQ sum+32(FP), DI")
	zero := "VXORPS"
	if s.width == 16 {
		zero = "VPXORD"
	}
	p("%s %s, %s, %s", zero, s.r(0), s.r(0), s.r(0))
	bcast(s, s.r(3), 1.44269504088896341)
	bcast(s, s.r(4), 0.693359375)
	bcast(s, s.r(5), -2.12194440e-4)
	for i, c := range []float32{1.0 / 720, 1.0 / 120, 1.0 / 24, 1.0 / 6, 1.0 / 2, 1} {
		bcast(s, s.r(6+i), c)
	}
	if s.width == 16 {
		bcast(s, s.r(12), -110)
	} else {
		bcast(s, s.r(12), -87.33654)
	}
	label("colexp" + s.name + "loop")
	p("CMPQ CX, $0")
	p("JLE colexp%sdone", s.name)
	if s.width == 16 {
		x, t, r, q := s.r(16), s.r(17), s.r(18), s.r(19)
		p("VMOVUPS (SI), %s", x)
		p("VSUBPS %s, %s, %s", s.r(2), x, x)
		expVectorAVX512(s, x, t, r, q, 0, 0)
	} else {
		x, t, r, q := s.r(13), s.r(14), s.r(15), s.r(1)
		p("VMOVUPS (SI), %s", x)
		p("VSUBPS %s, %s, %s", s.r(2), x, x)
		p("VMINPS expHi<>(SB), %s, %s", x, x)
		p("VMULPS %s, %s, %s", s.r(3), x, t)
		p("VCVTPS2DQ %s, %s", t, t)
		p("VCVTDQ2PS %s, %s", t, r)
		p("VMOVAPS %s, %s", x, q)
		p("VFNMADD231PS %s, %s, %s", s.r(4), r, q)
		p("VFNMADD231PS %s, %s, %s", s.r(5), r, q)
		p("VMOVAPS %s, %s", s.r(6), r)
		for i := 7; i <= 11; i++ {
			p("VFMADD213PS %s, %s, %s", s.r(i), q, r)
		}
		p("VFMADD213PS %s, %s, %s", s.r(11), q, r)
		p("VPSLLD $23, %s, %s", t, t)
		p("VPADDD %s, %s, %s", t, r, r)
		p("VCMPPS $0x1d, %s, %s, %s", s.r(12), x, t)
		p("VANDPS %s, %s, %s", t, r, r)
		p("VMOVUPS %s, (SI)", r)
		p("VADDPS %s, %s, %s", r, s.r(0), s.r(0))
	}
	p("ADDQ DX, SI")
	p("DECQ CX")
	p("JMP colexp%sloop", s.name)
	label("colexp" + s.name + "done")
	p("VADDPS (DI), %s, %s", s.r(0), s.r(0))
	p("VMOVUPS %s, (DI)", s.r(0))
	p("VZEROUPPER")
	p("RET")
}

func main() {
	out.WriteString("// Code generated by gen_kernels.go; DO NOT EDIT.\n\n//go:build amd64 && !purego\n\n#include \"textflag.h\"\n\n")
	for i := 0; i < 8; i++ {
		fmt.Fprintf(&out, "DATA expHi<>+%d(SB)/4, $0x%08x\n", 4*i, math.Float32bits(88))
	}
	out.WriteString("GLOBL expHi<>(SB), RODATA|NOPTR, $32\n")
	maxKernel(avx512)
	expKernel(avx512)
	colMaxKernel(avx512)
	colExpKernel(avx512)
	maxKernel(avx2)
	expKernel(avx2)
	colMaxKernel(avx2)
	colExpKernel(avx2)
	if err := os.WriteFile("kernels_amd64.s", out.Bytes(), 0o644); err != nil {
		panic(err)
	}
}
