//go:build amd64 && !purego

package vmath

import "golang.org/x/sys/cpu"

//go:generate go run gen_kernels.go

//go:noescape
func maxAVX512(x *float32, n int) float32

//go:noescape
func expShiftSumAVX512(x *float32, n int, m float32) float32

//go:noescape
func maxAVX2(x *float32, n int) float32

//go:noescape
func expShiftSumAVX2(x *float32, n int, m float32) float32

//go:noescape
func colMaxAVX512(x *float32, n, stride int, m *float32)

//go:noescape
func colExpShiftSumAVX512(x *float32, n, stride int, shift, sum *float32)

//go:noescape
func colMaxAVX2(x *float32, n, stride int, m *float32)

//go:noescape
func colExpShiftSumAVX2(x *float32, n, stride int, shift, sum *float32)

var (
	kernAVX512 = kernels{name: "avx512", maxStep: 32, expStep: 32, max: maxAVX512, expShiftSum: expShiftSumAVX512,
		lanes: 16, colMax: colMaxAVX512, colExpShiftSum: colExpShiftSumAVX512}
	kernAVX2 = kernels{name: "avx2", maxStep: 16, expStep: 8, max: maxAVX2, expShiftSum: expShiftSumAVX2,
		lanes: 8, colMax: colMaxAVX2, colExpShiftSum: colExpShiftSumAVX2}
)

func init() {
	switch {
	case cpu.X86.HasAVX512F:
		impl = kernAVX512
	case cpu.X86.HasAVX2 && cpu.X86.HasFMA:
		impl = kernAVX2
	}
}

// available lists the implementations this CPU can run, for the tests.
func available() []kernels {
	out := []kernels{{name: "go"}}
	if cpu.X86.HasAVX2 && cpu.X86.HasFMA {
		out = append(out, kernAVX2)
	}
	if cpu.X86.HasAVX512F {
		out = append(out, kernAVX512)
	}
	return out
}
