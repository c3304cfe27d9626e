package sae

import (
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/loupe-dev/loupe/sae/internal/st"
)

// trainedLike makes an SAE with non-trivial weights and scales, as if
// trained, for export tests.
func trainedLike(t *testing.T, arch Arch, dIn, dSAE, dOut int) *SAE {
	t.Helper()
	s, err := New(arch, dIn, dSAE, dOut, 3, 21)
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(8, 9))
	for i := range s.BEnc {
		s.BEnc[i] = float32(rng.NormFloat64() * 0.2)
	}
	for i := range s.BDec {
		s.BDec[i] = float32(rng.NormFloat64())
	}
	for i := range s.Threshold {
		s.Threshold[i] = float32(0.2 + 0.3*rng.Float64())
	}
	s.InScale, s.OutScale = 0.37, 0.37
	if dIn != dOut {
		s.OutScale = 2.5
		s.Meta.TargetHookName = "blocks.0.hook_mlp_out"
	}
	s.Meta.HookName = "blocks.0.ln2.hook_normalized"
	return s
}

func randRows(n, d int, seed uint64) []float32 {
	rng := rand.New(rand.NewPCG(seed, 1))
	x := make([]float32, n*d)
	for i := range x {
		x[i] = float32(rng.NormFloat64() * 3)
	}
	return x
}

// TestExportLoadRoundTrip: the exported folder, read back, gives the latents
// and reconstructions of the SAE that wrote it (raw activations in, the
// scales folded).
func TestExportLoadRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		arch      Arch
		dOut      int
		saelensAs string
	}{
		{Standard, 6, "standard"}, {TopK, 6, "topk"}, {JumpReLU, 6, "jumprelu"}, {BatchTopK, 6, "jumprelu"},
		{Matryoshka, 6, "jumprelu"}, {Standard, 5, "transcoder"}, {JumpReLU, 5, "jumprelu_transcoder"},
	} {
		t.Run(string(tc.arch)+"/"+tc.saelensAs, func(t *testing.T) {
			s := trainedLike(t, tc.arch, 6, 20, tc.dOut)
			if s.DIn != s.DOut {
				s.ApplyBDecToInput = false
			}
			dir := t.TempDir()
			dens := make([]float64, s.DSAE)
			dens[3] = 0.25
			if err := s.Export(dir, dens); err != nil {
				t.Fatal(err)
			}
			r, err := Load(dir)
			if err != nil {
				t.Fatal(err)
			}
			raw, _ := os.ReadFile(filepath.Join(dir, CfgFile))
			if !strings.Contains(string(raw), `"architecture": "`+tc.saelensAs+`"`) {
				t.Fatalf("cfg.json: %s", raw)
			}
			x := randRows(30, 6, 3)
			f0, f1 := s.Encode(x, 30), r.Encode(x, 30)
			y0, y1 := s.Decode(f0, 30), r.Decode(f1, 30)
			for i := range f0 {
				if !near(float64(f0[i]), float64(f1[i]), 1e-5) {
					t.Fatalf("latent %d: %g before export, %g after", i, f0[i], f1[i])
				}
			}
			for i := range y0 {
				if !near(float64(y0[i]), float64(y1[i]), 1e-5) {
					t.Fatalf("reconstruction %d: %g before export, %g after", i, y0[i], y1[i])
				}
			}
			sp, err := st.Read(filepath.Join(dir, SparsityFile))
			if err != nil {
				t.Fatal(err)
			}
			ls := sp.Tensors["sparsity"].Data
			if math.Abs(float64(ls[3])-math.Log10(0.25+1e-10)) > 1e-6 || ls[0] != float32(math.Log10(1e-10)) {
				t.Fatalf("sparsity: %v", ls[:4])
			}
		})
	}
	if err := trainedLike(t, TopK, 6, 20, 5).Export(t.TempDir(), nil); err == nil {
		t.Error("exported a TopK transcoder, which SAELens cannot load")
	}
}

// TestLoadSparsify writes a folder in sparsify's layout and checks that the
// latents are topk(relu((x − b_dec)·encoder.weightᵀ + encoder.bias)),
// computed here in float64, and the output Σ acts·W_dec + b_dec.
func TestLoadSparsify(t *testing.T) {
	const d, m, k, n = 7, 25, 4, 12
	dir := t.TempDir()
	enc, dec := randRows(m, d, 4), randRows(m, d, 5)
	benc, bdec := randRows(1, m, 6), randRows(1, d, 7)
	os.WriteFile(filepath.Join(dir, "cfg.json"), []byte(`{"expansion_factor": 32, "normalize_decoder": true, "num_latents": 25, "k": 4, "multi_topk": false, "skip_connection": false, "transcode": false, "d_in": 7}`), 0o644)
	if err := st.Write(filepath.Join(dir, "sae.safetensors"), []st.Tensor{
		{Name: "encoder.weight", Shape: []int{m, d}, Data: enc}, {Name: "encoder.bias", Shape: []int{m}, Data: benc},
		{Name: "W_dec", Shape: []int{m, d}, Data: dec}, {Name: "b_dec", Shape: []int{d}, Data: bdec}}, nil); err != nil {
		t.Fatal(err)
	}
	s, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	x := randRows(n, d, 8)
	f := s.Encode(x, n)
	y := s.Decode(f, n)
	for r := 0; r < n; r++ {
		pre := make([]float64, m)
		idx := make([]int, m)
		for j := 0; j < m; j++ {
			v := float64(benc[j])
			for i := 0; i < d; i++ {
				v += (float64(x[r*d+i]) - float64(bdec[i])) * float64(enc[j*d+i])
			}
			pre[j] = math.Max(v, 0)
			idx[j] = j
		}
		sort.SliceStable(idx, func(a, b int) bool { return pre[idx[a]] > pre[idx[b]] })
		want := make([]float64, m)
		for _, j := range idx[:k] {
			want[j] = pre[j]
		}
		for j := 0; j < m; j++ {
			if !near(float64(f[r*m+j]), want[j], 1e-5) {
				t.Fatalf("row %d latent %d: %g, formula %g", r, j, f[r*m+j], want[j])
			}
		}
		for i := 0; i < d; i++ {
			out := float64(bdec[i])
			for j := 0; j < m; j++ {
				out += want[j] * float64(dec[j*d+i])
			}
			if !near(float64(y[r*d+i]), out, 1e-5) {
				t.Fatalf("row %d output %d: %g, formula %g", r, i, y[r*d+i], out)
			}
		}
	}
}

// TestLoadBadFolders: truncated or mismatched files give errors naming the
// file or tensor, never a panic.
func TestLoadBadFolders(t *testing.T) {
	good := t.TempDir()
	if err := trainedLike(t, TopK, 6, 20, 6).Export(good, nil); err != nil {
		t.Fatal(err)
	}
	copyDir := func() string {
		d := t.TempDir()
		for _, f := range []string{CfgFile, WeightsFile} {
			b, _ := os.ReadFile(filepath.Join(good, f))
			os.WriteFile(filepath.Join(d, f), b, 0o644)
		}
		return d
	}
	w, _ := os.ReadFile(filepath.Join(good, WeightsFile))
	for _, cut := range []int{0, 5, 12, len(w) / 2, len(w) - 1} {
		d := copyDir()
		os.WriteFile(filepath.Join(d, WeightsFile), w[:cut], 0o644)
		_, err := Load(d)
		if err == nil || !strings.Contains(err.Error(), WeightsFile) {
			t.Errorf("weights cut at %d bytes: error %v", cut, err)
		}
	}
	d := copyDir()
	cfg, _ := os.ReadFile(filepath.Join(d, CfgFile))
	os.WriteFile(filepath.Join(d, CfgFile), []byte(strings.Replace(string(cfg), `"d_sae": 20`, `"d_sae": 21`, 1)), 0o644)
	if _, err := Load(d); err == nil || !strings.Contains(err.Error(), "cfg.json implies") {
		t.Errorf("d_sae mismatch: %v", err)
	}
	d = copyDir()
	os.WriteFile(filepath.Join(d, CfgFile), []byte(strings.Replace(string(cfg), `"normalize_activations": "none"`, `"normalize_activations": "expected_average_only_in"`, 1)), 0o644)
	if _, err := Load(d); err == nil || !strings.Contains(err.Error(), "normalize_activations") {
		t.Errorf("unfolded normalisation: %v", err)
	}
	d = copyDir()
	os.WriteFile(filepath.Join(d, CfgFile), []byte(`{"architecture": "gated", "d_in": 6, "d_sae": 20}`), 0o644)
	if _, err := Load(d); err == nil || !strings.Contains(err.Error(), "gated") {
		t.Errorf("gated: %v", err)
	}
	if _, err := Load(t.TempDir()); err == nil {
		t.Error("empty folder loaded")
	}
	// a failed export leaves no temporary files behind
	bad := trainedLike(t, TopK, 6, 20, 5)
	d = t.TempDir()
	bad.Export(d, nil)
	if ents, _ := os.ReadDir(d); len(ents) != 0 {
		names := []string{}
		for _, e := range ents {
			names = append(names, e.Name())
		}
		t.Errorf("refused export left %v", names)
	}
}
