package codebook

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/loupe-dev/loupe/organism/tokfsm"
	"github.com/loupe-dev/loupe/probe"
)

// tokfsmDir is the shipped TokFSM codebook model (organism/tokfsm/model).
var tokfsmDir = filepath.Join("..", "..", "organism", "tokfsm", "model")

type modelRef struct {
	Tokens [][]int
	Vocab  int
	Clean  struct {
		Logits []float32
		IDs    map[string][]int32
	}
	Intervention struct {
		Force struct {
			Hook     string
			Position int
			Code     int32
		}
		Disable struct {
			Hook  string
			Group int
			Codes []int32
		}
		Logits []float32
		IDs    map[string][]int32
	}
}

func loadTokFSM(t *testing.T) (*Model, *modelRef) {
	t.Helper()
	m, err := LoadModel(tokfsmDir, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	data, err := os.ReadFile(filepath.Join("..", "..", "organism", "tokfsm", "testdata", "reference.json"))
	if err != nil {
		t.Fatal(err)
	}
	var ref modelRef
	if err := json.Unmarshal(data, &ref); err != nil {
		t.Fatal(err)
	}
	return m, &ref
}

// loadTokFSMMachine loads the shipped TokFSM model and the machine it was
// trained on.
func loadTokFSMMachine(t *testing.T) (*Model, *tokfsm.FSM) {
	t.Helper()
	m, _ := loadTokFSM(t)
	f, err := tokfsm.Load(filepath.Join(tokfsmDir, "fsm.json"))
	if err != nil {
		t.Fatal(err)
	}
	return m, f
}

// runSplice runs the batch with the codebooks spliced in and every
// codebook's ids cached.
func runSplice(t *testing.T, m *Model, batch [][]int, sp *Splice) *probe.Result {
	t.Helper()
	r, err := m.Forward(context.Background(), batch, probe.Options{Hooks: &probe.Hooks{
		Edit: sp.Edits(), Cache: []string{"*" + IDsSuffix}}})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func checkAgainst(t *testing.T, m *Model, r *probe.Result, logits []float32, ids map[string][]int32) {
	t.Helper()
	if d := maxAbs(r.Logits, logits); d > 1e-4 {
		t.Errorf("logits differ from PyTorch's by %g (tolerance 1e-4)", d)
	} else {
		t.Logf("max |logit diff| vs PyTorch: %.2g", d)
	}
	for _, l := range m.Set.Layers {
		got := r.Cache[IDsHook(l.Hook)]
		want := ids[l.Hook]
		if got == nil || len(got.Data) != len(want) {
			t.Fatalf("%s: ids missing or of the wrong length", l.Hook)
		}
		bad := 0
		for i, v := range got.Data {
			if int32(v) != want[i] {
				bad++
			}
		}
		if bad > 0 {
			t.Errorf("%s: %d of %d code ids differ from PyTorch's", l.Hook, bad, len(want))
		}
	}
}

// Loupe runs the TokFSM model with its codebooks as PyTorch does: logits to
// 1e-4, the same code ids at every codebook, with and without interventions.
func TestTokFSMModelMatchesPyTorch(t *testing.T) {
	m, ref := loadTokFSM(t)
	checkTokFSMReference(t, m, ref)
}

// checkTokFSMReference runs the TokFSM model with its codebooks, clean and
// with the reference's forced and disabled codes, and checks both against
// the PyTorch reference (logits to 1e-4, code ids equal).
func checkTokFSMReference(t *testing.T, m *Model, ref *modelRef) {
	t.Helper()
	sp, err := NewSplice(m.Set)
	if err != nil {
		t.Fatal(err)
	}
	checkAgainst(t, m, runSplice(t, m, ref.Tokens, sp), ref.Clean.Logits, ref.Clean.IDs)

	iv := ref.Intervention
	sp, err = NewSplice(m.Set,
		Intervention{Hook: iv.Force.Hook, Positions: []int{iv.Force.Position}, Force: []int32{iv.Force.Code}},
		Intervention{Hook: iv.Disable.Hook, Group: iv.Disable.Group, Disable: iv.Disable.Codes})
	if err != nil {
		t.Fatal(err)
	}
	checkAgainst(t, m, runSplice(t, m, ref.Tokens, sp), iv.Logits, iv.IDs)
}

// Analyze's counts add up: every scored position of every sequence chose
// k codes per group of every codebook, and labels are fractions.
func TestAnalyzeCountsAddUp(t *testing.T) {
	m, f := loadTokFSMMachine(t)
	ev := NewStateEval(f, 6, 24, 3)
	feats, err := Analyze(context.Background(), m.Model, m.Set, ev.Seqs, AnalyzeOptions{Labels: ev.States, Contexts: 2})
	if err != nil {
		t.Fatal(err)
	}
	perSite := map[string]int64{}
	for _, ft := range feats {
		perSite[ft.Hook] += ft.Count
		var top int64
		for _, c := range ft.TopCounts {
			top += int64(c)
		}
		if top > ft.Count || ft.Positions != 6*24 || len(ft.Contexts) > 2 || len(ft.Contexts) > int(ft.Count) {
			t.Fatalf("%s %d: count %d, top-token counts %d, positions %d, %d contexts", ft.Hook, ft.Code, ft.Count, top, ft.Positions, len(ft.Contexts))
		}
		if ft.Label != "" && !(ft.LabelPrecision > 0 && ft.LabelPrecision <= 1 && ft.LabelAP > 0 && ft.LabelAP <= 1) {
			t.Fatalf("%s %d: label %q precision %g AP %g", ft.Hook, ft.Code, ft.Label, ft.LabelPrecision, ft.LabelAP)
		}
	}
	for _, l := range m.Set.Layers {
		if want := int64(6 * 24 * l.Groups * l.K); perSite[l.Hook] != want {
			t.Errorf("%s: %d firings, want positions*groups*k = %d", l.Hook, perSite[l.Hook], want)
		}
	}
}

// Codes forced at a generated position act in a KV-cached generation as in
// a full forward pass over the same tokens: the splice counts positions
// across a generation's forwards.
func TestInterventionInGenerationEqualsForward(t *testing.T) {
	m, ref := loadTokFSM(t)
	prompt := ref.Tokens[0][:9]
	l := m.Set.Layer("blocks.1.hook_mlp_out")
	ivs := []Intervention{
		{Hook: l.Hook, Positions: []int{len(prompt) + 1, len(prompt) + 3}, Force: []int32{7}},
		{Hook: "blocks.0.attn.hook_z", Group: 1, Positions: []int{len(prompt) + 2}, Disable: []int32{0, 1, 2, 3}},
	}
	sp, err := NewSplice(m.Set, ivs...)
	if err != nil {
		t.Fatal(err)
	}
	gen, err := m.Generate(context.Background(), prompt, probe.GenerateOptions{MaxTokens: 6, Hooks: &probe.Hooks{Edit: sp.Edits()}})
	if err != nil {
		t.Fatal(err)
	}
	full := append(append([]int(nil), prompt...), gen[:len(gen)-1]...)
	sp, _ = NewSplice(m.Set, ivs...)
	r, err := m.Forward(context.Background(), [][]int{full}, probe.Options{Hooks: &probe.Hooks{Edit: sp.Edits()}})
	if err != nil {
		t.Fatal(err)
	}
	for i, tok := range gen {
		row := r.LogitsAt(0, len(prompt)-1+i)
		best := 0
		for v := range row {
			if row[v] > row[best] {
				best = v
			}
		}
		if best != tok {
			t.Fatalf("generated token %d is %d; the full forward with the same codes predicts %d", i, tok, best)
		}
	}
	// And the intervention matters: without it the continuation differs
	// somewhere, or at least the forced position's codes do.
	sp, _ = NewSplice(m.Set)
	clean, _ := m.Forward(context.Background(), [][]int{full}, probe.Options{Hooks: &probe.Hooks{Edit: sp.Edits()}})
	if maxAbs(clean.Logits, r.Logits) == 0 {
		t.Fatal("forcing and disabling codes changed no logit")
	}
}

// A set that was never uploaded (each pass makes its tables) runs the same
// forward as the uploaded one LoadModel gives, to the bit.
func TestSpliceWithoutUploadEqualsUploaded(t *testing.T) {
	m, ref := loadTokFSM(t)
	fresh, err := Load(tokfsmDir)
	if err != nil {
		t.Fatal(err)
	}
	a, _ := NewSplice(m.Set)
	b, _ := NewSplice(fresh)
	ra, rb := runSplice(t, m, ref.Tokens, a), runSplice(t, m, ref.Tokens, b)
	if d := maxAbs(ra.Logits, rb.Logits); d != 0 {
		t.Fatalf("logits differ by %g between an uploaded set and a fresh one", d)
	}
}
