package compute

import "github.com/loupe-dev/loupe/probe/compute/internal/vmath"

// exp32 is e^x in float32 within 3 ulp (vmath.Exp): softmax and SiLU call
// it billions of times on long prompts.
func exp32(x float32) float32 { return vmath.Exp(x) }
