//go:build !amd64 || purego

package vmath

func available() []kernels { return []kernels{{name: "go"}} }
