package circuits

import (
	"context"
	"fmt"
	"math"
	"path/filepath"
	"testing"
	"time"

	"github.com/loupe-dev/loupe/probe"
	"github.com/loupe-dev/loupe/probe/compute"
	"github.com/loupe-dev/loupe/probe/weights"
)

// An independent transcription of GPT-2 and of patching, in float64 and
// written from Hugging Face's GPT2Model and Wang et al.'s description, with
// none of probe's or circuits' code: one prompt at a time, activations
// overridden by plain maps. Patcher's effects must match it.

type refGPT2 struct {
	L, D, H, Dh, F, V          int
	wte, wpe, lnfW, lnfB       []float64
	ln1W, ln1B, ln2W, ln2B     [][]float64
	attnW, attnB, projW, projB [][]float64 // Conv1D [in, out]
	fcW, fcB, mlpW, mlpB       [][]float64
}

func loadRef(t testing.TB, ts weights.Tensors, cfg probe.Config) *refGPT2 {
	get := func(name string) []float64 {
		d, err := ts.Float32(name)
		if err != nil {
			t.Fatal(err)
		}
		out := make([]float64, len(d))
		for i, v := range d {
			out[i] = float64(v)
		}
		return out
	}
	r := &refGPT2{L: cfg.Layers, D: cfg.DModel, H: cfg.Heads, Dh: cfg.HeadDim, F: cfg.DMLP, V: cfg.Vocab}
	r.wte, r.wpe = get("transformer.wte.weight"), get("transformer.wpe.weight")
	r.lnfW, r.lnfB = get("transformer.ln_f.weight"), get("transformer.ln_f.bias")
	for l := 0; l < r.L; l++ {
		p := fmt.Sprintf("transformer.h.%d.", l)
		r.ln1W, r.ln1B = append(r.ln1W, get(p+"ln_1.weight")), append(r.ln1B, get(p+"ln_1.bias"))
		r.ln2W, r.ln2B = append(r.ln2W, get(p+"ln_2.weight")), append(r.ln2B, get(p+"ln_2.bias"))
		r.attnW, r.attnB = append(r.attnW, get(p+"attn.c_attn.weight")), append(r.attnB, get(p+"attn.c_attn.bias"))
		r.projW, r.projB = append(r.projW, get(p+"attn.c_proj.weight")), append(r.projB, get(p+"attn.c_proj.bias"))
		r.fcW, r.fcB = append(r.fcW, get(p+"mlp.c_fc.weight")), append(r.fcB, get(p+"mlp.c_fc.bias"))
		r.mlpW, r.mlpB = append(r.mlpW, get(p+"mlp.c_proj.weight")), append(r.mlpB, get(p+"mlp.c_proj.bias"))
	}
	return r
}

func layerNorm(x, w, b []float64) []float64 {
	mu, v := 0.0, 0.0
	for _, a := range x {
		mu += a
	}
	mu /= float64(len(x))
	for _, a := range x {
		v += (a - mu) * (a - mu)
	}
	v /= float64(len(x))
	out := make([]float64, len(x))
	for i, a := range x {
		out[i] = (a-mu)/math.Sqrt(v+1e-5)*w[i] + b[i]
	}
	return out
}

// conv applies a Conv1D: x [in] · W [in, out] + b.
func conv(x, w, b []float64, out int) []float64 {
	y := append([]float64(nil), b...)
	for i, a := range x {
		for j := 0; j < out; j++ {
			y[j] += a * w[i*out+j]
		}
	}
	return y
}

// refRun holds one prompt's activations: z[l][t][h] (d_head), mlp[l][t].
type refRun struct {
	z      [][][][]float64
	mlp    [][][]float64
	logits []float64 // last position
}

// overrides replace activations as they are computed: z by (layer, head),
// MLP outputs by layer, the embeddings as a whole.
type overrides struct {
	z     map[[2]int][][]float64 // [t][d_head]
	mlp   map[int][][]float64
	embed [][]float64
}

func (r *refGPT2) run(ids []int, ov overrides) *refRun {
	T, D, H, Dh := len(ids), r.D, r.H, r.Dh
	x := make([][]float64, T)
	for t, id := range ids {
		x[t] = make([]float64, D)
		for d := 0; d < D; d++ {
			x[t][d] = r.wte[id*D+d] + r.wpe[t*D+d]
		}
		if ov.embed != nil {
			copy(x[t], ov.embed[t])
		}
	}
	out := &refRun{}
	for l := 0; l < r.L; l++ {
		qkv := make([][]float64, T)
		for t := range x {
			qkv[t] = conv(layerNorm(x[t], r.ln1W[l], r.ln1B[l]), r.attnW[l], r.attnB[l], 3*D)
		}
		z := make([][][]float64, T)
		for t := range z {
			z[t] = make([][]float64, H)
		}
		for h := 0; h < H; h++ {
			for q := 0; q < T; q++ {
				s := make([]float64, q+1)
				mx := math.Inf(-1)
				for k := 0; k <= q; k++ {
					for d := 0; d < Dh; d++ {
						s[k] += qkv[q][h*Dh+d] * qkv[k][D+h*Dh+d]
					}
					s[k] /= math.Sqrt(float64(Dh))
					mx = math.Max(mx, s[k])
				}
				sum := 0.0
				for k := range s {
					s[k] = math.Exp(s[k] - mx)
					sum += s[k]
				}
				zz := make([]float64, Dh)
				for k := range s {
					for d := 0; d < Dh; d++ {
						zz[d] += s[k] / sum * qkv[k][2*D+h*Dh+d]
					}
				}
				if o, ok := ov.z[[2]int{l, h}]; ok {
					zz = append([]float64(nil), o[q]...)
				}
				z[q][h] = zz
			}
		}
		out.z = append(out.z, z)
		for t := range x {
			flat := make([]float64, 0, D)
			for h := 0; h < H; h++ {
				flat = append(flat, z[t][h]...)
			}
			a := conv(flat, r.projW[l], r.projB[l], D)
			for d := range a {
				x[t][d] += a[d]
			}
		}
		m := make([][]float64, T)
		for t := range x {
			h := conv(layerNorm(x[t], r.ln2W[l], r.ln2B[l]), r.fcW[l], r.fcB[l], r.F)
			for i, v := range h {
				h[i] = 0.5 * v * (1 + math.Tanh(math.Sqrt(2/math.Pi)*(v+0.044715*v*v*v)))
			}
			m[t] = conv(h, r.mlpW[l], r.mlpB[l], D)
			if o, ok := ov.mlp[l]; ok {
				m[t] = append([]float64(nil), o[t]...)
			}
			for d := range m[t] {
				x[t][d] += m[t][d]
			}
		}
		out.mlp = append(out.mlp, m)
	}
	f := layerNorm(x[T-1], r.lnfW, r.lnfB)
	out.logits = make([]float64, r.V)
	for v := 0; v < r.V; v++ {
		for d := 0; d < D; d++ {
			out.logits[v] += f[d] * r.wte[v*D+d]
		}
	}
	return out
}

func (r *refGPT2) embed(ids []int) [][]float64 {
	e := make([][]float64, len(ids))
	for t, id := range ids {
		e[t] = make([]float64, r.D)
		for d := range e[t] {
			e[t][d] = r.wte[id*r.D+d] + r.wpe[t*r.D+d]
		}
	}
	return e
}

func refLogitDiff(lg []float64, q Prompt) float64 {
	a, w := 0.0, 0.0
	for _, i := range q.Answers {
		a += lg[i]
	}
	for _, i := range q.Wrong {
		w += lg[i]
	}
	return a/float64(len(q.Answers)) - w/float64(len(q.Wrong))
}

// refEffects computes every component's noising effect and the path
// patching effect of the given edges, by the definitions.
func refEffects(r *refGPT2, prompts []Prompt, edges []Edge) (nodes map[Node]float64, paths map[Edge]float64) {
	n := float64(len(prompts))
	clean, corrupt := 0.0, 0.0
	runs := make([][2]*refRun, len(prompts))
	for i, q := range prompts {
		a, b := r.run(q.Clean, overrides{}), r.run(q.Corrupt, overrides{})
		runs[i] = [2]*refRun{a, b}
		clean += refLogitDiff(a.logits, q) / n
		corrupt += refLogitDiff(b.logits, q) / n
	}
	effect := func(m float64) float64 { return (clean - m) / (clean - corrupt) }
	zOf := func(run *refRun, l, h int) [][]float64 {
		out := make([][]float64, len(run.z[l]))
		for t := range out {
			out[t] = run.z[l][t][h]
		}
		return out
	}
	// set puts node u's value from run src into ov.
	set := func(ov *overrides, u Node, src *refRun, ids []int) {
		switch u.Kind {
		case NodeHead:
			ov.z[[2]int{u.Layer, u.Head}] = zOf(src, u.Layer, u.Head)
		case NodeMLP:
			ov.mlp[u.Layer] = src.mlp[u.Layer]
		case NodeEmbed:
			ov.embed = r.embed(ids)
		}
	}
	nodes = map[Node]float64{}
	for _, u := range Components(probe.Config{Layers: r.L, Heads: r.H}) {
		m := 0.0
		for i, q := range prompts {
			ov := overrides{z: map[[2]int][][]float64{}, mlp: map[int][][]float64{}}
			set(&ov, u, runs[i][1], q.Corrupt)
			m += refLogitDiff(r.run(q.Clean, ov).logits, q) / n
		}
		nodes[u] = effect(m)
	}
	paths = map[Edge]float64{}
	L := r.L
	for _, e := range edges {
		m := 0.0
		for i, q := range prompts {
			ov := overrides{z: map[[2]int][][]float64{}, mlp: map[int][][]float64{}}
			set(&ov, e.From, runs[i][1], q.Corrupt)
			for _, u := range Components(probe.Config{Layers: r.L, Heads: r.H}) {
				if o := order(u, L); o > order(e.From, L) && o < order(e.To, L) {
					set(&ov, u, runs[i][0], q.Clean)
				}
			}
			a := r.run(q.Clean, ov)
			if e.To.Kind != NodeLogits {
				ov2 := overrides{z: map[[2]int][][]float64{}, mlp: map[int][][]float64{}}
				set(&ov2, e.To, a, q.Clean)
				a = r.run(q.Clean, ov2)
			}
			m += refLogitDiff(a.logits, q) / n
		}
		paths[e] = effect(m)
	}
	return nodes, paths
}

func compareToReference(t *testing.T, m *probe.Model, ref *refGPT2, prompts []Prompt, edges []Edge, tol float64) (map[Node]float64, map[Edge]float64) {
	ctx := context.Background()
	p, err := NewPatcher(ctx, m, prompts, PatchOptions{Metric: LogitDiff})
	if err != nil {
		t.Fatal(err)
	}
	wantNodes, wantPaths := refEffects(ref, prompts, edges)
	worst := 0.0
	for n, want := range wantNodes {
		_, got, err := p.Patch(ctx, Noising, n)
		if err != nil {
			t.Fatal(err)
		}
		worst = math.Max(worst, math.Abs(got-want))
		if math.Abs(got-want) > tol {
			t.Errorf("%s: patching effect %.6f, transcription %.6f", n, got, want)
		}
	}
	for e, want := range wantPaths {
		_, got, err := p.PathPatch(ctx, e.From, e.To)
		if err != nil {
			t.Fatal(err)
		}
		worst = math.Max(worst, math.Abs(got-want))
		if math.Abs(got-want) > tol {
			t.Errorf("%s: path patching effect %.6f, transcription %.6f", e, got, want)
		}
	}
	t.Logf("%d node and %d path effects agree with the float64 transcription to %.2g", len(wantNodes), len(wantPaths), worst)
	return wantNodes, wantPaths
}

func TestPatchingMatchesTranscriptionToyIOI(t *testing.T) {
	m, prompts := toyIOI(t, 6)
	wm, err := weights.Open(filepath.Join("testdata", "ioimodel"))
	if err != nil {
		t.Fatal(err)
	}
	defer wm.Close()
	ref := loadRef(t, wm.Tensors, m.Config)
	var edges []Edge
	for i, e := range Edges(m.Config) {
		if i%7 == 0 {
			edges = append(edges, e)
		}
	}
	compareToReference(t, m, ref, prompts, edges, 1e-4)
}

// plantedIOI is a 2-layer GPT-2 whose weights are written by hand: the
// residual holds the token one-hot in [0, 16), the position in [16, 32) and
// a scratch slot in [32, 48). Head 0.0 attends uniformly and copies the
// name tokens 0..7 both into the scratch slot and (at half weight) into the
// logits; head 1.2 attends uniformly and copies the scratch slot into the
// logits. Every other head and both MLPs are zero, so their effect on any
// task is zero by construction, and all of the task goes through 0.0.
func plantedIOI(t testing.TB) (*probe.Model, weights.Map) {
	return plantedGPT2(t, func(l int, w plantedHeads) {
		for d := 0; d < 8; d++ {
			if l == 0 {
				w.v(0, d, d, 1)
				w.o(0, d, 32+d, 1)
				w.o(0, d, d, 0.5)
			} else {
				w.v(2, d, 32+d, 1)
				w.o(2, d, d, 1)
			}
		}
	})
}

// The planted models' shape: 16 tokens, a residual stream of 48 (token
// one-hots in [0, 16), position one-hots in [16, 32), a scratch slot in
// [32, 48)), 2 layers of 4 heads of 12, an MLP of 8, 16 positions.
const plV, plD, plH, plDh, plL, plF, plP = 16, 48, 4, 12, 2, 8, 16

// plantedHeads writes one layer's attention weights of a planted model:
// c_attn (Conv1D [in, out]: the q, k, v columns) and c_proj.
type plantedHeads struct{ attn, proj []float32 }

// q, k and v set head h's dimension d to read residual coordinate src
// with weight x; o sets head h's dimension d to write coordinate dst.
func (w plantedHeads) q(h, d, src int, x float32) { w.attn[src*3*plD+h*plDh+d] = x }
func (w plantedHeads) k(h, d, src int, x float32) { w.attn[src*3*plD+plD+h*plDh+d] = x }
func (w plantedHeads) v(h, d, src int, x float32) { w.attn[src*3*plD+2*plD+h*plDh+d] = x }
func (w plantedHeads) o(h, d, dst int, x float32) { w.proj[(h*plDh+d)*plD+dst] = x }

// plantedGPT2 is the frame of the hand-written 2-layer GPT-2 models: one-hot
// token and position embeddings, unit norms, zero biases and zero MLPs;
// fill writes each layer's heads. Every weight fill leaves at zero stays
// zero, so a head or MLP it does not touch has no effect by construction.
func plantedGPT2(t testing.TB, fill func(l int, w plantedHeads)) (*probe.Model, weights.Map) {
	const V, D, F, P = plV, plD, plF, plP
	cfg := probe.Config{Family: probe.FamilyGPT2, Act: "gelu_new", TiedEmbed: true, AttnBias: true,
		Layers: plL, DModel: D, Heads: plH, KVHeads: plH, HeadDim: plDh, DMLP: F, Vocab: V, MaxPos: P, NormEps: 1e-5, BOS: -1, EOS: -1}
	ts := weights.Map{}
	put := func(name string, data []float32, shape ...int) { ts[name] = weights.Array{Shape: shape, Data: data} }
	ones := func(n int) []float32 {
		d := make([]float32, n)
		for i := range d {
			d[i] = 1
		}
		return d
	}
	wte, wpe := make([]float32, V*D), make([]float32, P*D)
	for v := 0; v < V; v++ {
		wte[v*D+v] = 1
	}
	for p := 0; p < P; p++ {
		wpe[p*D+16+p] = 1
	}
	put("transformer.wte.weight", wte, V, D)
	put("transformer.wpe.weight", wpe, P, D)
	put("transformer.ln_f.weight", ones(D), D)
	put("transformer.ln_f.bias", make([]float32, D), D)
	for l := 0; l < plL; l++ {
		pre := fmt.Sprintf("transformer.h.%d.", l)
		w := plantedHeads{attn: make([]float32, D*3*D), proj: make([]float32, D*D)}
		fill(l, w)
		put(pre+"ln_1.weight", ones(D), D)
		put(pre+"ln_1.bias", make([]float32, D), D)
		put(pre+"ln_2.weight", ones(D), D)
		put(pre+"ln_2.bias", make([]float32, D), D)
		put(pre+"attn.c_attn.weight", w.attn, D, 3*D)
		put(pre+"attn.c_attn.bias", make([]float32, 3*D), 3*D)
		put(pre+"attn.c_proj.weight", w.proj, D, D)
		put(pre+"attn.c_proj.bias", make([]float32, D), D)
		put(pre+"mlp.c_fc.weight", make([]float32, D*F), D, F)
		put(pre+"mlp.c_fc.bias", make([]float32, F), F)
		put(pre+"mlp.c_proj.weight", make([]float32, F*D), F, D)
		put(pre+"mlp.c_proj.bias", make([]float32, D), D)
	}
	m, err := probe.New(cfg, ts, compute.NewCPU())
	if err != nil {
		t.Fatal(err)
	}
	return m, ts
}

func TestPatchingPlantedModel(t *testing.T) {
	m, ts := plantedIOI(t)
	var prompts []Prompt
	for a := 0; a < 8; a++ {
		b := (a + 3) % 8
		prompts = append(prompts, Prompt{Clean: []int{15, a, 9, 10, 11, 12}, Corrupt: []int{15, b, 9, 10, 11, 12}, Answers: []int{a}, Wrong: []int{b}})
	}
	ref := loadRef(t, ts, m.Config)
	edges := Edges(m.Config)
	nodes, paths := compareToReference(t, m, ref, prompts, edges, 1e-4)
	for n, e := range nodes {
		switch n {
		case HeadNode(0, 0):
			if e < 0.99 {
				t.Errorf("0.0 carries the whole task by construction, effect %.4f", e)
			}
		case HeadNode(1, 2):
			if e < 0.05 || e > 0.95 {
				t.Errorf("1.2 carries part of the task, effect %.4f", e)
			}
		default:
			if e != 0 {
				t.Errorf("%s is zero by construction, effect %g", n, e)
			}
		}
	}
	for e, v := range paths {
		live := e == Edge{EmbedNode(), HeadNode(0, 0)} || e == Edge{HeadNode(0, 0), HeadNode(1, 2)} ||
			e == Edge{HeadNode(0, 0), LogitsNode()} || e == Edge{HeadNode(1, 2), LogitsNode()}
		// The embeddings reach 1.2 and the logits also through the
		// layer norms' scale (the name token is part of every position's
		// norm), a small effect that is not zero.
		small := 1e-6
		if e.From.Kind == NodeEmbed {
			small = 0.01
		}
		if live && v <= 0.01 || !live && math.Abs(v) > small {
			t.Errorf("path %s: effect %g (planted edges are embed->0.0->{1.2, logits}, 1.2->logits)", e, v)
		}
	}
}

// Residual positions: on the planted model only position 1 (the name)
// differs between the prompts, so patching the residual stream there
// carries the whole task and elsewhere none of it; patching every position
// of block 0's input is patching the embeddings.
func TestPatchResidPositions(t *testing.T) {
	m, _ := plantedIOI(t)
	var prompts []Prompt
	for a := 0; a < 8; a++ {
		b := (a + 5) % 8
		prompts = append(prompts, Prompt{Clean: []int{15, a, 9, 10, 11, 12}, Corrupt: []int{15, b, 9, 10, 11, 12}, Answers: []int{a}, Wrong: []int{b}})
	}
	ctx := context.Background()
	p, err := NewPatcher(ctx, m, prompts, PatchOptions{Metric: LogitDiff})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		node Node
		want float64
	}{{ResidNode(0, 1), 1}, {ResidNode(0, 3), 0}, {ResidNode(0, -5), 1}, {ResidNode(1, 0), 0}} {
		for _, dir := range []Direction{Noising, Denoising} {
			_, e, err := p.Patch(ctx, dir, c.node)
			if err != nil {
				t.Fatal(err)
			}
			if e != c.want {
				t.Errorf("%s %s: effect %v, want %v exactly", dir, c.node, e, c.want)
			}
		}
	}
	all := []Node{}
	for pos := 0; pos < 6; pos++ {
		all = append(all, ResidNode(0, pos))
	}
	m1, _, err := p.Patch(ctx, Noising, all...)
	if err != nil {
		t.Fatal(err)
	}
	m2, _, err := p.Patch(ctx, Noising, EmbedNode())
	if err != nil {
		t.Fatal(err)
	}
	if m1 != m2 {
		t.Errorf("every position of resid_pre0 gives %v, the embeddings %v", m1, m2)
	}
}

// Every method on the planted model, whose circuit is 0.0 and 1.2 by
// construction.
func TestMethodsOnPlantedModel(t *testing.T) {
	m, _ := plantedIOI(t)
	var prompts []Prompt
	for a := 0; a < 8; a++ {
		for _, d := range []int{3, 5} {
			b := (a + d) % 8
			prompts = append(prompts, Prompt{Clean: []int{15, a, 9, 10, 11, 12}, Corrupt: []int{15, b, 9, 10, 11, 12}, Answers: []int{a}, Wrong: []int{b}})
		}
	}
	truth := []Node{HeadNode(0, 0), HeadNode(1, 2)}
	truthEdges := []Edge{{EmbedNode(), HeadNode(0, 0)}, {HeadNode(0, 0), HeadNode(1, 2)}, {HeadNode(0, 0), LogitsNode()}, {HeadNode(1, 2), LogitsNode()}}
	ctx := context.Background()
	for _, method := range Methods {
		p := methodPatcher(t, ctx, m, prompts, method)
		use := prompts
		if method == "sae" {
			// The SAE method's negatives are prompts the model cannot
			// complete (the paper's definition); a prompt with another
			// name it completes as well as the clean one. Token 13 is no
			// name: nothing is copied.
			use = nil
			for i, q := range prompts {
				q.Corrupt = []int{15, 13 + i%2, 9, 10, 11, 12}
				use = append(use, q)
			}
		}
		f, err := Find(ctx, p, use, FindOptions{Method: method, EdgeScan: method == "patching", SAE: SAEDefaults()})
		if err != nil {
			t.Fatal(err)
		}
		s := f.ScoreAgainst(Components(m.Config), Edges(m.Config), truth, truthEdges)
		t.Logf("%s: head AUC %.3f, edge AUC %.3f, precision %.3f, recall %.3f, circuit %v, %d passes in %v", method, s.NodeAUC, s.EdgeAUC, s.Precision, s.Recall, f.Nodes, f.Runs, f.Wall.Round(time.Millisecond))
		if s.NodeAUC < 0.99 {
			t.Errorf("%s ranks the planted heads with AUC %.3f", method, s.NodeAUC)
		}
	}
}

// methodPatcher is the patcher each method is scored with in these tests:
// ACDC's KL metric for acdc, the logit difference for the others.
func methodPatcher(t *testing.T, ctx context.Context, m *probe.Model, prompts []Prompt, method string) *Patcher {
	t.Helper()
	metric := LogitDiff
	if method == "acdc" {
		metric = KL
	}
	p, err := NewPatcher(ctx, m, prompts, PatchOptions{Metric: metric})
	if err != nil {
		t.Fatal(err)
	}
	return p
}
