package sae

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"

	"github.com/loupe-dev/loupe/internal/atomicfile"
	"github.com/loupe-dev/loupe/probe/weights"
	"github.com/loupe-dev/loupe/sae/internal/st"
)

// The SAELens v6 folder: cfg.json, sae_weights.safetensors and
// sparsity.safetensors (DESIGN decision 10).
const (
	CfgFile      = "cfg.json"
	WeightsFile  = "sae_weights.safetensors"
	SparsityFile = "sparsity.safetensors"
	// SAELensVersion is the SAELens release whose format Loupe writes.
	SAELensVersion = "6.5.1"
)

// saelensCfg is cfg.json as SAELens v6 reads it (SAEConfig and its
// subclasses; unknown keys are ignored by SAELens, so Loupe adds its own
// under "loupe").
type saelensCfg struct {
	Architecture        string          `json:"architecture"`
	DIn                 int             `json:"d_in"`
	DSAE                int             `json:"d_sae"`
	DOut                int             `json:"d_out,omitempty"`
	Dtype               string          `json:"dtype"`
	Device              string          `json:"device"`
	ApplyBDecToInput    bool            `json:"apply_b_dec_to_input"`
	NormalizeActivation json.RawMessage `json:"normalize_activations"`
	ReshapeActivations  string          `json:"reshape_activations"`
	K                   *int            `json:"k,omitempty"`
	HookNameOut         string          `json:"hook_name_out,omitempty"`
	SAELensVersion      string          `json:"sae_lens_version"`
	Metadata            saelensMeta     `json:"metadata"`
	Loupe               *loupeCfg       `json:"loupe,omitempty"`
}

type saelensMeta struct {
	ModelName              string `json:"model_name"`
	HookName               string `json:"hook_name"`
	HookHeadIndex          *int   `json:"hook_head_index"`
	HookNameOut            string `json:"hook_name_out,omitempty"`
	ContextSize            int    `json:"context_size"`
	PrependBOS             bool   `json:"prepend_bos"`
	DatasetPath            string `json:"dataset_path"`
	SAELensVersion         string `json:"sae_lens_version"`
	SAELensTrainingVersion string `json:"sae_lens_training_version"`
}

// loupeCfg records what SAELens's schema has no place for.
type loupeCfg struct {
	TrainedArch    string `json:"trained_architecture"`
	K              int    `json:"k,omitempty"`
	Groups         []int  `json:"matryoshka_groups,omitempty"`
	TrainingTokens int64  `json:"training_tokens"`
	// ExcludeFirst: the tokens after BOS that training left out.
	ExcludeFirst int `json:"exclude_first_tokens_after_bos,omitempty"`
}

// saelensArch names the SAELens inference class for an SAE: BatchTopK and
// Matryoshka export as JumpReLU with their learned threshold; transcoders
// as SAELens's transcoder classes.
func (s *SAE) saelensArch() (string, error) {
	tc := s.DIn != s.DOut || s.Meta.TargetHookName != ""
	switch {
	case s.Arch == Standard && tc:
		return "transcoder", nil
	case s.Arch == Standard:
		return "standard", nil
	case s.Arch == TopK && tc:
		return "", fmt.Errorf("SAELens v6 has no TopK transcoder class: train this transcoder as batchtopk (exported as jumprelu_transcoder)")
	case s.Arch == TopK:
		return "topk", nil
	case tc:
		return "jumprelu_transcoder", nil
	default:
		return "jumprelu", nil
	}
}

// Export writes the SAE as a SAELens v6 folder in dir, with the
// normalisation scales folded into the weights (normalize_activations
// "none"): W_enc = (InScale·Enc)ᵀ, W_dec = Dec/OutScale, b_dec =
// BDec/OutScale. density is each latent's firing frequency over evaluation
// tokens (sparsity.safetensors holds log10(density + 1e-10), as SAELens
// computes it); nil leaves the sparsity file out. Each file is written
// atomically, cfg.json last.
func (s *SAE) Export(dir string, density []float64) error {
	arch, err := s.saelensArch()
	if err != nil {
		return fmt.Errorf("export %s: %w", dir, err)
	}
	if s.ApplyBDecToInput && s.InScale != s.OutScale {
		return fmt.Errorf("export %s: b_dec is applied to the input, so the input and output scales must agree (%g, %g)", dir, s.InScale, s.OutScale)
	}
	if density != nil && len(density) != s.DSAE {
		return fmt.Errorf("export %s: %d densities for %d latents", dir, len(density), s.DSAE)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("export: %w", err)
	}
	wenc := make([]float32, s.DIn*s.DSAE)
	for j := 0; j < s.DSAE; j++ {
		for i := 0; i < s.DIn; i++ {
			wenc[i*s.DSAE+j] = s.Enc[j*s.DIn+i] * s.InScale
		}
	}
	inv := 1 / s.OutScale
	wdec := make([]float32, len(s.Dec))
	for i, v := range s.Dec {
		wdec[i] = v * inv
	}
	bdec := make([]float32, len(s.BDec))
	for i, v := range s.BDec {
		bdec[i] = v * inv
	}
	ts := []st.Tensor{
		{Name: "W_enc", Shape: []int{s.DIn, s.DSAE}, Data: wenc},
		{Name: "b_enc", Shape: []int{s.DSAE}, Data: s.BEnc},
		{Name: "W_dec", Shape: []int{s.DSAE, s.DOut}, Data: wdec},
		{Name: "b_dec", Shape: []int{s.DOut}, Data: bdec},
	}
	if strings.HasPrefix(arch, "jumprelu") {
		ts = append(ts, st.Tensor{Name: "threshold", Shape: []int{s.DSAE}, Data: s.Threshold})
	}
	if err := st.Write(filepath.Join(dir, WeightsFile), ts, map[string]string{"format": "pt"}); err != nil {
		return fmt.Errorf("export: %w", err)
	}
	if density != nil {
		ls := make([]float32, s.DSAE)
		for j, d := range density {
			ls[j] = float32(math.Log10(d + 1e-10))
		}
		if err := st.Write(filepath.Join(dir, SparsityFile), []st.Tensor{{Name: "sparsity", Shape: []int{s.DSAE}, Data: ls}}, map[string]string{"format": "pt"}); err != nil {
			return fmt.Errorf("export: %w", err)
		}
	}
	cfg := saelensCfg{Architecture: arch, DIn: s.DIn, DSAE: s.DSAE, Dtype: "float32", Device: "cpu",
		ApplyBDecToInput: s.ApplyBDecToInput, NormalizeActivation: json.RawMessage(`"none"`), ReshapeActivations: "none",
		SAELensVersion: SAELensVersion,
		Metadata: saelensMeta{ModelName: s.Meta.ModelName, HookName: s.Meta.HookName, HookHeadIndex: s.Meta.HookHeadIndex,
			HookNameOut: s.Meta.TargetHookName, ContextSize: s.Meta.ContextSize, PrependBOS: s.Meta.PrependBOS,
			DatasetPath: s.Meta.DatasetPath, SAELensVersion: SAELensVersion, SAELensTrainingVersion: "loupe"},
		Loupe: &loupeCfg{TrainedArch: string(s.Arch), K: s.K, Groups: s.Groups, TrainingTokens: s.Meta.TokensSeen, ExcludeFirst: s.Meta.ExcludeFirst}}
	if arch == "topk" {
		k := s.K
		cfg.K = &k
	}
	// An SAE on every head's z reads them concatenated; SAELens flattens
	// hook_z's [.., heads, d_head] itself when told so.
	if strings.HasSuffix(s.Meta.HookName, "hook_z") && s.Meta.HookHeadIndex == nil {
		cfg.ReshapeActivations = "hook_z"
	}
	if strings.Contains(arch, "transcoder") {
		cfg.DOut = s.DOut
		cfg.HookNameOut = s.Meta.TargetHookName
	}
	js, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return fmt.Errorf("export: %w", err)
	}
	return atomicfile.Write(filepath.Join(dir, CfgFile), func(w io.Writer) error {
		_, err := w.Write(append(js, '\n'))
		return err
	})
}

// Load reads an SAE folder: SAELens v6 (cfg.json + sae_weights.safetensors)
// or sparsify (cfg.json + sae.safetensors). The SAE it returns takes raw
// activations (InScale = OutScale = 1).
func Load(dir string) (*SAE, error) {
	raw, err := os.ReadFile(filepath.Join(dir, CfgFile))
	if err != nil {
		return nil, fmt.Errorf("load SAE %s: %w", dir, err)
	}
	if _, err := os.Stat(filepath.Join(dir, WeightsFile)); err == nil {
		return loadSAELens(dir, raw)
	}
	if _, err := os.Stat(filepath.Join(dir, "sae.safetensors")); err == nil {
		return loadSparsify(dir, raw)
	}
	return nil, fmt.Errorf("load SAE %s: neither %s (SAELens) nor sae.safetensors (sparsify)", dir, WeightsFile)
}

// tensorsOf opens a safetensors file (any float dtype, through
// probe/weights) and reads the named tensors with the given shapes.
func tensorsOf(path string, want map[string][]int) (map[string][]float32, error) {
	m, err := weights.Open(path)
	if err != nil {
		return nil, err
	}
	defer m.Close()
	out := map[string][]float32{}
	for name, shape := range want {
		got, ok := m.Tensors.Shape(name)
		if !ok {
			if shape == nil {
				continue // optional
			}
			return nil, fmt.Errorf("%s: tensor %q missing", path, name)
		}
		if shape != nil && !equalInts(got, shape) {
			return nil, fmt.Errorf("%s: tensor %q has shape %v, cfg.json implies %v", path, name, got, shape)
		}
		v, err := m.Tensors.Float32(name)
		if err != nil {
			return nil, err
		}
		out[name] = v
	}
	return out, nil
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func loadSAELens(dir string, raw []byte) (*SAE, error) {
	var cfg saelensCfg
	if err := json.Unmarshal(raw, &cfg); err != nil {
		return nil, fmt.Errorf("load SAE %s: cfg.json: %w", dir, err)
	}
	var norm any
	if len(cfg.NormalizeActivation) > 0 {
		json.Unmarshal(cfg.NormalizeActivation, &norm)
	}
	if norm != nil && norm != "none" && norm != false {
		return nil, fmt.Errorf("load SAE %s: normalize_activations %v: the scaling factor is not in the folder; fold it into the weights first", dir, norm)
	}
	if cfg.DIn <= 0 || cfg.DSAE <= 0 {
		return nil, fmt.Errorf("load SAE %s: cfg.json gives d_in %d, d_sae %d", dir, cfg.DIn, cfg.DSAE)
	}
	dOut := cfg.DIn
	s := &SAE{DIn: cfg.DIn, DSAE: cfg.DSAE, ApplyBDecToInput: cfg.ApplyBDecToInput, InScale: 1, OutScale: 1}
	switch cfg.Architecture {
	case "standard":
		s.Arch = Standard
	case "topk":
		if cfg.K == nil || *cfg.K <= 0 || *cfg.K > cfg.DSAE {
			return nil, fmt.Errorf("load SAE %s: topk needs k in (0, d_sae]", dir)
		}
		s.Arch, s.K = TopK, *cfg.K
	case "jumprelu":
		s.Arch = JumpReLU
	case "transcoder", "jumprelu_transcoder":
		if cfg.DOut <= 0 {
			return nil, fmt.Errorf("load SAE %s: %s without d_out", dir, cfg.Architecture)
		}
		dOut = cfg.DOut
		s.Arch = Standard
		if cfg.Architecture == "jumprelu_transcoder" {
			s.Arch = JumpReLU
		}
		s.ApplyBDecToInput = false
	default:
		return nil, fmt.Errorf("load SAE %s: architecture %q is not one Loupe reads (standard, topk, jumprelu, transcoder, jumprelu_transcoder)", dir, cfg.Architecture)
	}
	if cfg.Architecture == "standard" || cfg.Architecture == "topk" || cfg.Architecture == "jumprelu" {
		if cfg.ApplyBDecToInput && dOut != cfg.DIn {
			return nil, fmt.Errorf("load SAE %s: apply_b_dec_to_input with d_out != d_in", dir)
		}
	}
	s.DOut = dOut
	want := map[string][]int{"W_enc": {s.DIn, s.DSAE}, "b_enc": {s.DSAE}, "W_dec": {s.DSAE, dOut}, "b_dec": {dOut}}
	if s.Arch == JumpReLU {
		want["threshold"] = []int{s.DSAE}
	}
	ts, err := tensorsOf(filepath.Join(dir, WeightsFile), want)
	if err != nil {
		return nil, fmt.Errorf("load SAE %s: %w", dir, err)
	}
	s.Enc = make([]float32, s.DSAE*s.DIn)
	for i := 0; i < s.DIn; i++ {
		for j := 0; j < s.DSAE; j++ {
			s.Enc[j*s.DIn+i] = ts["W_enc"][i*s.DSAE+j]
		}
	}
	s.BEnc, s.Dec, s.BDec, s.Threshold = ts["b_enc"], ts["W_dec"], ts["b_dec"], ts["threshold"]
	m := cfg.Metadata
	s.Meta = Metadata{ModelName: m.ModelName, HookName: m.HookName, HookHeadIndex: m.HookHeadIndex, TargetHookName: m.HookNameOut,
		ContextSize: m.ContextSize, PrependBOS: m.PrependBOS, DatasetPath: m.DatasetPath}
	if s.Meta.TargetHookName == "" {
		s.Meta.TargetHookName = cfg.HookNameOut
	}
	if cfg.Loupe != nil {
		s.Meta.TokensSeen, s.Meta.ExcludeFirst = cfg.Loupe.TrainingTokens, cfg.Loupe.ExcludeFirst
		if a, err := ParseArch(cfg.Loupe.TrainedArch); err == nil && (a == BatchTopK || a == Matryoshka) && s.Arch == JumpReLU {
			s.Arch, s.K, s.Groups = a, cfg.Loupe.K, cfg.Loupe.Groups
		}
	}
	return s, nil
}

// sparsifyCfg is the cfg.json of an EleutherAI sparsify SAE.
type sparsifyCfg struct {
	DIn             int   `json:"d_in"`
	NumLatents      int   `json:"num_latents"`
	ExpansionFactor int   `json:"expansion_factor"`
	K               int   `json:"k"`
	Transcode       bool  `json:"transcode"`
	SkipConnection  bool  `json:"skip_connection"`
	NormalizeDec    *bool `json:"normalize_decoder"`
}

// loadSparsify reads a sparsify folder as a TopK SAE: sparsify encodes
// topk(relu((x − b_dec)·encoder.weightᵀ + encoder.bias)) (no b_dec
// subtraction for transcoders) and decodes Σ acts·W_dec + b_dec.
func loadSparsify(dir string, raw []byte) (*SAE, error) {
	var cfg sparsifyCfg
	if err := json.Unmarshal(raw, &cfg); err != nil {
		return nil, fmt.Errorf("load sparsify SAE %s: cfg.json: %w", dir, err)
	}
	if cfg.DIn <= 0 {
		return nil, fmt.Errorf("load sparsify SAE %s: cfg.json has no d_in", dir)
	}
	m := cfg.NumLatents
	if m <= 0 {
		m = cfg.DIn * cfg.ExpansionFactor
	}
	if m <= 0 || cfg.K <= 0 || cfg.K > m {
		return nil, fmt.Errorf("load sparsify SAE %s: %d latents, k %d", dir, m, cfg.K)
	}
	if cfg.SkipConnection {
		return nil, errors.New("load sparsify SAE " + dir + ": skip connections (W_skip) are not supported")
	}
	ts, err := tensorsOf(filepath.Join(dir, "sae.safetensors"), map[string][]int{
		"encoder.weight": {m, cfg.DIn}, "encoder.bias": {m}, "W_dec": {m, cfg.DIn}, "b_dec": {cfg.DIn}})
	if err != nil {
		return nil, fmt.Errorf("load sparsify SAE %s: %w", dir, err)
	}
	return &SAE{Arch: TopK, DIn: cfg.DIn, DSAE: m, DOut: cfg.DIn, K: cfg.K,
		Enc: ts["encoder.weight"], BEnc: ts["encoder.bias"], Dec: ts["W_dec"], BDec: ts["b_dec"],
		ApplyBDecToInput: !cfg.Transcode, InScale: 1, OutScale: 1}, nil
}
