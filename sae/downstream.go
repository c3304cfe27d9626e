package sae

import (
	"context"
	"fmt"

	"github.com/loupe-dev/loupe/probe"
	"github.com/loupe-dev/loupe/probe/compute"
	"github.com/loupe-dev/loupe/sae/activations"
	"github.com/loupe-dev/loupe/sae/internal/nexttoken"
)

// Downstream is how the model does with the SAE spliced into its forward
// pass, next-token loss averaged over every predicted position.
type Downstream struct {
	Tokens  int64   `json:"predictions"` // predicted positions
	CEClean float64 `json:"ce_clean"`    // the model as it is
	CESAE   float64 `json:"ce_sae"`      // the hook's activation replaced by the SAE's reconstruction
	CEZero  float64 `json:"ce_zero"`     // the activation zero-ablated
	KL      float64 `json:"kl"`          // mean KL(clean ‖ spliced) of the next-token distributions, nats
	// CERecovered = (CE_zero − CE_sae) / (CE_zero − CE_clean); DeltaLoss =
	// CE_sae − CE_clean.
	CERecovered float64 `json:"ce_loss_recovered"`
	DeltaLoss   float64 `json:"delta_lm_loss"`
}

// SpliceEdits are the probe edits that put an SAE into a forward pass: the
// activation at the SAE's hook (for a transcoder, at its target hook, from
// the input hook's activation) is replaced by the reconstruction, or by
// zeros when zero is set. Positions before keepFrom of every sequence (the
// BOS position, which SAEs are not trained on) keep their activation. head
// >= 0 splices only that head's columns of a per-head hook.
func SpliceEdits(s *SAE, hook activations.HookPoint, target *activations.HookPoint, seqLen, keepFrom int, zero bool) []probe.Edit {
	var input []float32 // a transcoder's input activation, captured first
	out := hook
	var edits []probe.Edit
	if target != nil {
		out = *target
		edits = append(edits, probe.Edit{Hook: hook.Name, Fn: func(b compute.Backend, _ string, t compute.Tensor, shape []int) (compute.Tensor, error) {
			input = headOf(b.ToHost(t), shape, hook.Head)
			return t, nil
		}})
	}
	edits = append(edits, probe.Edit{Hook: out.Name, Fn: func(b compute.Backend, name string, t compute.Tensor, shape []int) (compute.Tensor, error) {
		all := b.ToHost(t)
		rows := len(all) / shape[len(shape)-1]
		if len(shape) == 4 {
			rows = shape[0] * shape[1]
		}
		width := len(all) / rows
		x := headOf(all, shape, out.Head)
		if target != nil {
			x = input
		}
		w := len(x) / rows
		if w != s.DIn {
			return nil, fmt.Errorf("splice %s: the activation has %d features, the SAE reads %d", name, w, s.DIn)
		}
		var rec []float32
		if zero {
			rec = make([]float32, rows*s.DOut)
		} else {
			rec = s.Decode(s.Encode(x, rows), rows)
		}
		lo, d := 0, s.DOut
		if out.Head >= 0 {
			d = shape[len(shape)-1]
			lo = out.Head * d
		}
		if d != s.DOut {
			return nil, fmt.Errorf("splice %s: the SAE writes %d features, the hook has %d", name, s.DOut, d)
		}
		for r := 0; r < rows; r++ {
			if r%seqLen < keepFrom {
				continue
			}
			copy(all[r*width+lo:r*width+lo+d], rec[r*d:(r+1)*d])
		}
		return b.FromHost(all, t.Shape()...), nil
	}})
	return edits
}

// headOf takes one head's columns of an activation [rows, H·d] (all of
// them when head < 0).
func headOf(all []float32, shape []int, head int) []float32 {
	if head < 0 {
		return all
	}
	d, h := shape[len(shape)-1], shape[len(shape)-2]
	rows := len(all) / (d * h)
	out := make([]float32, rows*d)
	for r := 0; r < rows; r++ {
		copy(out[r*d:(r+1)*d], all[r*h*d+head*d:r*h*d+(head+1)*d])
	}
	return out
}

// EvaluateDownstream runs each context three times (clean, SAE spliced,
// zero-ablated), seqs contexts per forward pass, and compares next-token
// losses. keepFrom positions of each context keep their activation.
func EvaluateDownstream(ctx context.Context, m *probe.Model, s *SAE, hook activations.HookPoint, target *activations.HookPoint, contexts [][]int32, seqs, keepFrom int) (Downstream, error) {
	var d Downstream
	if len(contexts) == 0 {
		return d, fmt.Errorf("sae: no contexts for the downstream evaluation")
	}
	if seqs <= 0 {
		seqs = 2
	}
	var losses nexttoken.Losses
	for lo := 0; lo < len(contexts); lo += seqs {
		batch := make([][]int, 0, seqs)
		for _, c := range contexts[lo:min(lo+seqs, len(contexts))] {
			ids := make([]int, len(c))
			for i, v := range c {
				ids[i] = int(v)
			}
			batch = append(batch, ids)
		}
		T := len(batch[0])
		run := func(edits []probe.Edit) (*probe.Result, error) {
			var h *probe.Hooks
			if edits != nil {
				h = &probe.Hooks{Edit: edits}
			}
			return m.Forward(ctx, batch, probe.Options{Hooks: h, Logits: probe.LogitsAll})
		}
		clean, err := run(nil)
		if err != nil {
			return d, err
		}
		spliced, err := run(SpliceEdits(s, hook, target, T, keepFrom, false))
		if err != nil {
			return d, err
		}
		zeroed, err := run(SpliceEdits(s, hook, target, T, keepFrom, true))
		if err != nil {
			return d, err
		}
		losses.Add(batch, clean, spliced, zeroed)
	}
	d.Tokens = losses.Tokens
	d.CEClean, d.CESAE, d.CEZero, d.KL, d.CERecovered = losses.Means()
	d.DeltaLoss = d.CESAE - d.CEClean
	return d, nil
}
