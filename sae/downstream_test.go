package sae

import (
	"context"
	"math"
	"testing"

	"github.com/loupe-dev/loupe/organism"
	"github.com/loupe-dev/loupe/probe"
	"github.com/loupe-dev/loupe/probe/compute"
	"github.com/loupe-dev/loupe/sae/activations"
)

// identitySAE reconstructs exactly: latents relu(x) and relu(−x) of every
// feature, decoded back as their difference.
func identitySAE(d int) *SAE {
	s := &SAE{Arch: Standard, DIn: d, DSAE: 2 * d, DOut: d, Enc: make([]float32, 2*d*d), BEnc: make([]float32, 2*d),
		Dec: make([]float32, 2*d*d), BDec: make([]float32, d), InScale: 1, OutScale: 1}
	for i := 0; i < d; i++ {
		s.Enc[i*d+i], s.Enc[(d+i)*d+i] = 1, -1
		s.Dec[i*d+i], s.Dec[(d+i)*d+i] = 1, -1
	}
	return s
}

// ce is the mean next-token cross-entropy of a forward result, computed
// here on its own.
func ce(res *probe.Result, batch [][]int) float64 {
	var sum float64
	n := 0
	for b, s := range batch {
		for t := 0; t+1 < len(s); t++ {
			row := res.LogitsAt(b, t)
			mx := math.Inf(-1)
			for _, v := range row {
				mx = math.Max(mx, float64(v))
			}
			var z float64
			for _, v := range row {
				z += math.Exp(float64(v) - mx)
			}
			sum += mx + math.Log(z) - float64(row[s[t+1]])
			n++
		}
	}
	return sum / float64(n)
}

func TestDownstreamSplice(t *testing.T) {
	m, err := organism.Load(nil)
	if err != nil {
		t.Fatal(err)
	}
	docs := []string{"The day after Monday is Tuesday. one two three four five six", "red green blue red green blue red green"}
	ctxs, _, err := activations.Contexts(m.Tokenizer, docs, 16, 4, true)
	if err != nil {
		t.Fatal(err)
	}
	hook := activations.HookPoint{Name: "blocks.1.hook_resid_post", Head: -1}
	d, err := EvaluateDownstream(context.Background(), m.Model, identitySAE(m.Config.DModel), hook, nil, ctxs, 2, 1)
	if err != nil {
		t.Fatal(err)
	}
	// the independent numbers: plain and zero-ablated forwards
	var batch [][]int
	for _, c := range ctxs {
		var ids []int
		for _, v := range c {
			ids = append(ids, int(v))
		}
		batch = append(batch, ids)
	}
	clean, err := m.Forward(context.Background(), batch, probe.Options{Logits: probe.LogitsAll})
	if err != nil {
		t.Fatal(err)
	}
	zeroEdit := probe.Edit{Hook: hook.Name, Fn: func(b compute.Backend, _ string, x compute.Tensor, shape []int) (compute.Tensor, error) {
		v := b.ToHost(x)
		dm := shape[2]
		for r := 0; r < len(v)/dm; r++ {
			if r%shape[1] == 0 {
				continue // the BOS position keeps its activation
			}
			clear(v[r*dm : (r+1)*dm])
		}
		return b.FromHost(v, x.Shape()...), nil
	}}
	zero, err := m.Forward(context.Background(), batch, probe.Options{Hooks: &probe.Hooks{Edit: []probe.Edit{zeroEdit}}, Logits: probe.LogitsAll})
	if err != nil {
		t.Fatal(err)
	}
	wantClean, wantZero := ce(clean, batch), ce(zero, batch)
	if math.Abs(d.CEClean-wantClean) > 1e-4 || math.Abs(d.CEZero-wantZero) > 1e-4 {
		t.Errorf("CE clean %.6f (independent %.6f), zero %.6f (independent %.6f)", d.CEClean, wantClean, d.CEZero, wantZero)
	}
	if d.Tokens != int64(len(ctxs)*15) {
		t.Errorf("%d predictions, want %d", d.Tokens, len(ctxs)*15)
	}
	// an exact SAE recovers everything
	if math.Abs(d.CESAE-d.CEClean) > 1e-4 || math.Abs(d.CERecovered-1) > 1e-3 || math.Abs(d.KL) > 1e-4 {
		t.Errorf("identity SAE: CE %.6f vs clean %.6f, recovered %.5f, KL %.2g", d.CESAE, d.CEClean, d.CERecovered, d.KL)
	}
	if d.CEZero < d.CEClean+0.5 {
		t.Errorf("zero-ablating the residual stream cost only %.3f nats", d.CEZero-d.CEClean)
	}
	// a hook of another width is refused
	if _, err := EvaluateDownstream(context.Background(), m.Model, identitySAE(7), hook, nil, ctxs, 2, 1); err == nil {
		t.Error("an SAE of the wrong width was spliced in")
	}
}
