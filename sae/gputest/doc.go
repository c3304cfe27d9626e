// Package gputest holds the tests of SAE training on the GPU (sae.GPUTrainable):
// the GPU step against the CPU step, planted dictionaries, resume, bad input,
// and the speed figures (LOUPE_SAE_BENCH=1). They skip, saying why, without
// a GPU. They live apart from the sae package's own tests so that their test
// binary, which travels to the GPU machine (scripts/gpu/sae-bench.sh), does
// not carry the embedded organism those tests load.
package gputest
