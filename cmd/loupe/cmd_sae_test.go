package main

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/loupe-dev/loupe/sae"
	"github.com/loupe-dev/loupe/store"
)

// tiny keeps a CLI training run to seconds on the CI box.
var tiny = []string{"--tokens", "2048", "--batch", "256", "--expansion", "2", "--k", "8", "--ctx", "33",
	"--seqs", "4", "--eval-tokens", "512", "--eval-contexts", "1", "--organism-docs", "300", "--quiet"}

func TestSAETrainEvalOnOrganism(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "sae")
	args := append([]string{"sae", "train", "--hook", "blocks.1.hook_resid_post", "--arch", "topk", "--out", dir}, tiny...)
	code, out, errOut := runCLI(t, args...)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	if !strings.Contains(out, "CE loss recovered") || !strings.Contains(out, "FVU") {
		t.Fatalf("output: %s", out)
	}
	for _, f := range []string{"cfg.json", "sae_weights.safetensors", "sparsity.safetensors", "eval.json", "checkpoint.safetensors"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Errorf("missing %s", f)
		}
	}
	var rep map[string]any
	b, _ := os.ReadFile(filepath.Join(dir, "eval.json"))
	if err := json.Unmarshal(b, &rep); err != nil || rep["l0"].(float64) <= 0 || rep["l0"].(float64) > 8 {
		t.Fatalf("eval.json: %s (%v)", b, err)
	}
	code, out, errOut = runCLI(t, "sae", "eval", dir, "--eval-tokens", "512", "--eval-contexts", "1", "--ctx", "33", "--organism-docs", "300", "--json")
	if code != 0 {
		t.Fatalf("eval: exit %d: %s", code, errOut)
	}
	var ev map[string]any
	if err := json.Unmarshal([]byte(out), &ev); err != nil || ev["fvu"] == nil || ev["downstream"] == nil {
		t.Fatalf("eval --json: %s (%v)", out, err)
	}

	feats := filepath.Join(t.TempDir(), "features.arrow")
	code, out, errOut = runCLI(t, "sae", "features", dir, "--out", feats, "--tokens", "512", "--ctx", "33", "--organism-docs", "300",
		"--prompt", "The day after Monday is Tuesday.")
	if code != 0 || !strings.Contains(out, "latents fire") {
		t.Fatalf("features: exit %d: %s%s", code, out, errOut)
	}
	tr, err := store.Open(feats)
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	fr, err := tr.ReadFeatures(context.Background())
	if err != nil || len(fr) != 512 {
		t.Fatalf("features table: %d rows, %v", len(fr), err)
	}
	if len(fr[0].TopIDs) != 10 || fr[0].TopValues[0] < fr[0].TopValues[9] || fr[0].BottomValues[0] > fr[0].BottomValues[9] {
		t.Errorf("logit table of latent 0: %+v", fr[0])
	}
	ex, err := tr.ReadFeatureExamples(context.Background(), -1)
	if err != nil || len(ex) == 0 {
		t.Fatalf("examples: %d, %v", len(ex), err)
	}
	for _, e := range ex[:min(len(ex), 50)] {
		if e.Acts[e.Position-e.WindowStart] != e.Activation {
			t.Fatalf("example of latent %d: window value %g at its position, activation %g", e.Latent, e.Acts[e.Position-e.WindowStart], e.Activation)
		}
	}
	pa, err := tr.ReadFeatureActs(context.Background(), 0)
	if err != nil || len(pa) < 5 || len(pa[1].Latents) == 0 || len(pa[1].Latents) > 8 {
		t.Fatalf("prompt latents: %+v, %v", pa, err)
	}

	// an SAE whose width differs from its hook's
	cfg, _ := os.ReadFile(filepath.Join(dir, "cfg.json"))
	os.WriteFile(filepath.Join(dir, "cfg.json"), []byte(strings.Replace(string(cfg), "blocks.1.hook_resid_post", "blocks.1.mlp.hook_post", 1)), 0o644)
	code, _, errOut = runCLI(t, "sae", "eval", dir, "--organism-docs", "300")
	if code == 0 || !strings.Contains(errOut, "reads 256 features") {
		t.Errorf("width mismatch: exit %d, %s", code, errOut)
	}
}

func TestSAEBadInput(t *testing.T) {
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty.txt")
	os.WriteFile(empty, nil, 0o644)
	out := filepath.Join(dir, "out")
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"sae"}, 2, "want `loupe sae train`"},
		{[]string{"sae", "train", "--out", out}, 2, "--hook is required"},
		{[]string{"sae", "train", "--hook", "blocks.1.hook_resid_post"}, 2, "--out is required"},
		{[]string{"sae", "train", "--hook", "blocks.9.hook_resid_post", "--out", out}, 2, "no such hook"},
		{[]string{"sae", "train", "--hook", "blocks.1.hook_resid_post", "--arch", "gated", "--out", out}, 2, "unknown SAE architecture"},
		{[]string{"sae", "train", "--hook", "blocks.1.hook_resid_post", "--corpus", empty, "--out", out}, 1, "empty.txt"},
		{[]string{"sae", "train", "--hook", "blocks.1.hook_resid_post", "--device", "nosuch", "--out", out}, 2, "--device"},
		{[]string{"sae", "train", "--hook", "blocks.1.hook_resid_post", "--resume", "--out", out}, 1, "no checkpoint"},
		{[]string{"sae", "train", "--hook", "blocks.1.hook_resid_post", "--exclude-first", "-3", "--out", out}, 2, "--exclude-first -3"},
		{[]string{"sae", "train", "--hook", "blocks.1.hook_resid_post", "--ctx", "4", "--exclude-first", "3", "--out", out}, 1, "too short"},
		{[]string{"sae", "eval", filepath.Join(dir, "nothing")}, 1, "nothing"},
		{[]string{"sae", "train", "--hook", "blocks.1.hook_resid_post", "--k", "0", "--out", filepath.Join(dir, "k0")}, 2, "--k 0"},
		{[]string{"sae", "train", "--hook", "blocks.1.hook_resid_post", "--arch", "batchtopk", "--expansion", "1", "--k", "100000", "--out", filepath.Join(dir, "k0")}, 2, "--k 100000"},
	} {
		code, o, e := runCLI(t, tc.args...)
		if code != tc.code || !strings.Contains(o+e, tc.want) {
			t.Errorf("loupe %v: exit %d, %q%q; want exit %d and %q", tc.args, code, o, e, tc.code, tc.want)
		}
	}
	if ents, _ := os.ReadDir(out); len(ents) != 0 {
		t.Errorf("failed runs left files in %s: %v", out, ents)
	}
	// A bad --k is refused before the run makes its folder.
	if _, err := os.Stat(filepath.Join(dir, "k0")); err == nil {
		t.Errorf("sae train --k 0 left the folder %s behind", filepath.Join(dir, "k0"))
	}
}

// TestSAETrainFromTraces trains on activations `loupe trace` stored.
func TestSAETrainFromTraces(t *testing.T) {
	dir := t.TempDir()
	prompts := filepath.Join(dir, "prompts.txt")
	os.WriteFile(prompts, []byte("The day after Monday is Tuesday. The day after Tuesday is Wednesday.\none two three four five six seven eight nine ten eleven twelve\nred green blue red green blue red green blue red green blue\n"), 0o644)
	trace := filepath.Join(dir, "t.arrow")
	if code, _, errOut := runCLI(t, "trace", "--prompts", prompts, "--hooks", "blocks.1.hook_resid_post", "--quiet", "--out", trace); code != 0 {
		t.Fatalf("trace: %s", errOut)
	}
	out := filepath.Join(dir, "sae")
	args := append([]string{"sae", "train", "--hook", "blocks.1.hook_resid_post", "--activations", trace, "--out", out}, tiny...)
	args = append(args, "--batch", "16", "--tokens", "160")
	code, stdout, errOut := runCLI(t, args...)
	if code != 0 || !strings.Contains(stdout, "trained on 160 tokens") {
		t.Fatalf("exit %d: %s%s", code, stdout, errOut)
	}
	cfg, _ := os.ReadFile(filepath.Join(out, "cfg.json"))
	if !strings.Contains(string(cfg), trace) {
		t.Errorf("cfg.json does not name the traces as its dataset: %s", cfg)
	}
	code, _, errOut = runCLI(t, append([]string{"sae", "train", "--hook", "blocks.0.hook_resid_post", "--activations", trace, "--out", out + "2"}, tiny...)...)
	if code == 0 || !strings.Contains(errOut, "no activations of hook") {
		t.Errorf("a hook the trace lacks: exit %d, %s", code, errOut)
	}
}

// TestSAEEvalSparsifyFolder evaluates a folder in sparsify's layout, which
// names no hook: --hook gives it.
func TestSAEEvalSparsifyFolder(t *testing.T) {
	dir := t.TempDir()
	trained := filepath.Join(dir, "sae")
	if code, _, errOut := runCLI(t, append([]string{"sae", "train", "--hook", "blocks.1.hook_resid_post", "--out", trained}, tiny...)...); code != 0 {
		t.Fatal(errOut)
	}
	s, err := sae.Load(trained)
	if err != nil {
		t.Fatal(err)
	}
	sp := filepath.Join(dir, "sparsify")
	os.MkdirAll(sp, 0o755)
	os.WriteFile(filepath.Join(sp, "cfg.json"), []byte(fmt.Sprintf(`{"num_latents": %d, "k": %d, "d_in": %d, "transcode": false}`, s.DSAE, s.K, s.DIn)), 0o644)
	writeSparsify(t, filepath.Join(sp, "sae.safetensors"), s)
	args := []string{"sae", "eval", sp, "--eval-tokens", "512", "--eval-contexts", "0", "--ctx", "33", "--organism-docs", "300", "--json"}
	if code, _, errOut := runCLI(t, args...); code != 2 || !strings.Contains(errOut, "--hook") {
		t.Fatalf("no hook: exit %d, %s", code, errOut)
	}
	code, out, errOut := runCLI(t, append(args, "--hook", "blocks.1.hook_resid_post")...)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	var a, b map[string]any
	json.Unmarshal([]byte(out), &a)
	code, out, _ = runCLI(t, "sae", "eval", trained, "--eval-tokens", "512", "--eval-contexts", "0", "--ctx", "33", "--organism-docs", "300", "--json")
	json.Unmarshal([]byte(out), &b)
	if code != 0 || a["fvu"] == nil || math.Abs(a["fvu"].(float64)-b["fvu"].(float64)) > 1e-5 {
		t.Errorf("the sparsify copy's FVU %v differs from the SAELens folder's %v", a["fvu"], b["fvu"])
	}
}

// writeSparsify writes s's weights under sparsify's names as a safetensors
// file (float32), by hand: the format is a length, a JSON header, the data.
func writeSparsify(t *testing.T, path string, s *sae.SAE) {
	t.Helper()
	type ent struct {
		Dtype   string  `json:"dtype"`
		Shape   []int   `json:"shape"`
		Offsets []int64 `json:"data_offsets"`
	}
	ts := []struct {
		name  string
		shape []int
		data  []float32
	}{{"W_dec", []int{s.DSAE, s.DOut}, s.Dec}, {"b_dec", []int{s.DOut}, s.BDec},
		{"encoder.bias", []int{s.DSAE}, s.BEnc}, {"encoder.weight", []int{s.DSAE, s.DIn}, s.Enc}}
	header := map[string]ent{}
	var data []byte
	for _, x := range ts {
		lo := int64(len(data))
		for _, v := range x.data {
			data = binary.LittleEndian.AppendUint32(data, math.Float32bits(v))
		}
		header[x.name] = ent{"F32", x.shape, []int64{lo, int64(len(data))}}
	}
	hj, _ := json.Marshal(header)
	out := binary.LittleEndian.AppendUint64(nil, uint64(len(hj)))
	out = append(append(out, hj...), data...)
	if err := os.WriteFile(path, out, 0o644); err != nil {
		t.Fatal(err)
	}
}
