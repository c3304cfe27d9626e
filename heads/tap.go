package heads

import (
	"github.com/loupe-dev/loupe/probe"
	"github.com/loupe-dev/loupe/probe/compute"
)

// patternHook is the glob of every layer's attention pattern.
const patternHook = "blocks.*.attn.hook_pattern"

// identityPatternEdit changes nothing, but an edit on the pattern makes the
// forward pass build it (scores → softmax → mix) and reduce it on the host:
// the unfused path, which tests compare with the fused one.
func identityPatternEdit() probe.Edit {
	return probe.Edit{
		Hook: patternHook,
		Fn: func(_ compute.Backend, _ string, t compute.Tensor, _ []int) (compute.Tensor, error) {
			return t, nil
		},
	}
}

// prefillChunk is the piece size in which the scorers read long prompts
// (probe's chunked prefill): a prompt's activations then take memory for
// prefillChunk positions whatever its length. The unfused path (an edit
// on the pattern) cannot be chunked.
func prefillChunk(materialise bool) int {
	if materialise {
		return 0
	}
	return 2048
}

// ablation turns heads into zero-ablation edits.
func ablation(cfg probe.Config, hs []Head) []probe.Edit {
	var e []probe.Edit
	for _, h := range hs {
		e = append(e, probe.ZeroAblateHead(cfg, h.Layer, h.Head))
	}
	return e
}
