package circuits

import (
	"context"
	"math"
	"testing"

	"github.com/loupe-dev/loupe/probe"
)

// plantedGate is a 2-layer GPT-2 written by hand in which a head every
// answer needs behaves identically on the SAE method's positives and
// negatives. The residual holds the token one-hot in [0, 16), the position
// in [16, 32) and a scratch slot in [32, 40). Head 0.0 attends uniformly
// and copies the name tokens 0..7 into the scratch slot; it reads nothing
// else. Head 1.2 copies the scratch slot into the logits, gated by the
// last token: after token 12 ("go") its query turns away from the first
// position (BOS, token 15) and it reads the names; after token 13 ("stop")
// it attends to BOS, whose scratch holds no name, and the logits are level
// over the names. Every other head and both MLPs are zero. The circuit is
// 0.0 → 1.2 → logits: 0.0 is the only way a name reaches the logits.
func plantedGate(t testing.TB) *probe.Model {
	const beta = 8 // the gate's query scale
	m, _ := plantedGPT2(t, func(l int, w plantedHeads) {
		if l == 0 {
			for d := 0; d < 8; d++ {
				w.v(0, d, d, 1)
				w.o(0, d, 32+d, 1)
			}
			return
		}
		w.q(2, 8, 13, beta) // "stop" looks for BOS, "go" away from it
		w.q(2, 8, 12, -beta)
		w.k(2, 8, 15, 1)
		for d := 0; d < 8; d++ {
			w.v(2, d, 32+d, 1)
			w.o(2, d, d, 1)
		}
	})
	return m
}

// The SAE method cannot see a necessary head that behaves alike on its
// positives and negatives. On plantedGate the positives end in "go" (the
// model names the name), the negatives are the same prompts ending in
// "stop" (the model cannot say which name: the paper's definition of a
// negative). Head 0.0 reads only the names, so its pooled output is the
// same on each positive and its negative, every code it gets on a
// positive it gets on the negative too, and its SAE score is 0 whatever
// the autoencoder learns, for every seed; yet it is the only way a name
// reaches the logits, and patching it from a prompt with another name
// moves the answer all the way (effect ≥ 0.9). Head 1.2, whose output the
// gate changes at the last position, scores no lower than any other head
// (its codes are few: the gate moves one position of the six its output
// is averaged over, and the eight names share its codes).
func TestSAEMethodBlindToSharedBehaviour(t *testing.T) {
	m := plantedGate(t)
	ctx := context.Background()
	var named, gated []Prompt
	for a := 0; a < 8; a++ {
		for _, d := range []int{3, 5} {
			b := (a + d) % 8
			named = append(named, Prompt{Clean: []int{15, a, 9, 10, 11, 12}, Corrupt: []int{15, b, 9, 10, 11, 12}, Answers: []int{a}, Wrong: []int{b}})
			gated = append(gated, Prompt{Clean: []int{15, a, 9, 10, 11, 12}, Corrupt: []int{15, a, 9, 10, 11, 13}, Answers: []int{a}, Wrong: []int{b}})
		}
	}
	// The model: names the name after "go", not after "stop".
	pos, neg := lastProbs(t, m, cleanOf(gated)), lastProbs(t, m, corruptOf(gated))
	var ldPos, ldNeg float64
	for i, q := range gated {
		a, b := q.Answers[0], q.Wrong[0]
		ldPos += math.Log(pos[i][a]/pos[i][b]) / float64(len(gated))
		ldNeg += math.Abs(math.Log(neg[i][a]/neg[i][b])) / float64(len(gated))
	}
	t.Logf("logit difference answer − other name: %.3f after go, |%.2g| after stop", ldPos, ldNeg)
	if ldPos < 1 || ldNeg > 0.01*ldPos {
		t.Fatalf("the planted gate does not work: logit difference %.3f after go, %.3g after stop", ldPos, ldNeg)
	}
	// Head 0.0's pooled output is the same on each positive and its negative.
	H, D := m.Config.Layers*m.Config.Heads, m.Config.DModel
	feats, err := HeadFeatures(ctx, m, append(cleanOf(gated), corruptOf(gated)...), 32, "mean")
	if err != nil {
		t.Fatal(err)
	}
	worst, size := 0.0, 0.0
	for i := range gated {
		p, n := feats[(i*H)*D:][:D], feats[((len(gated)+i)*H)*D:][:D]
		for d := range p {
			worst, size = math.Max(worst, math.Abs(float64(p[d]-n[d]))), math.Max(size, math.Abs(float64(p[d])))
		}
	}
	if worst > 1e-6 || size < 0.1 {
		t.Fatalf("head 0.0's pooled output: largest |positive − negative| %.3g (values up to %.3g): want it the same, and not zero", worst, size)
	}
	// Head 1.2's differs: the gate changes it at the last position.
	gap := 0.0
	for i := range gated {
		p, n := feats[(i*H+6)*D:][:D], feats[((len(gated)+i)*H+6)*D:][:D]
		for d := range p {
			gap = math.Max(gap, math.Abs(float64(p[d]-n[d])))
		}
	}
	if gap < 0.05 {
		t.Fatalf("head 1.2's pooled output: largest |positive − negative| %.3g: the gate changes nothing", gap)
	}
	t.Logf("pooled outputs, largest |positive − negative|: head 0.0 %.2g (values up to %.2f), head 1.2 %.3f", worst, size, gap)
	// Necessary: patching it from another name moves the answer all the way.
	p, err := NewPatcher(ctx, m, named, PatchOptions{Metric: LogitDiff})
	if err != nil {
		t.Fatal(err)
	}
	eff, err := p.NodeScores(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if eff[HeadNode(0, 0)] < 0.9 {
		t.Errorf("patching head 0.0 from another name: effect %.3f, want >= 0.9 (it carries the name)", eff[HeadNode(0, 0)])
	}
	// Invisible to the SAE method, seed after seed.
	for seed := uint64(1); seed <= 5; seed++ {
		cfg := SAEDefaults()
		cfg.Seed = seed
		res, err := SAECircuit(ctx, m, gated, cfg, TrainPaperSAE)
		if err != nil {
			t.Fatal(err)
		}
		s := res.NodeScores
		auc := NodeAUC(heads(Components(m.Config)), s, []Node{HeadNode(0, 0), HeadNode(1, 2)})
		t.Logf("seed %d: SAE node scores 0.0 %.0f, 1.2 %.0f; node AUC against {0.0, 1.2} %.3f; patching effect of 0.0 %.3f", seed, s[HeadNode(0, 0)], s[HeadNode(1, 2)], auc, eff[HeadNode(0, 0)])
		if s[HeadNode(0, 0)] != 0 {
			t.Errorf("seed %d: head 0.0 scores %g: a code on a positive that its negative lacks, though their features are equal", seed, s[HeadNode(0, 0)])
		}
		for _, h := range heads(Components(m.Config)) {
			if s[h] > s[HeadNode(1, 2)] {
				t.Errorf("seed %d: head %v scores %g, above the gated head 1.2 (%g)", seed, h, s[h], s[HeadNode(1, 2)])
			}
		}
	}
}
