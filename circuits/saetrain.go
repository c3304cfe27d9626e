package circuits

import (
	"context"
	"fmt"

	"github.com/loupe-dev/loupe/sae"
	"github.com/loupe-dev/loupe/sae/activations"
	"github.com/loupe-dev/loupe/sae/train"
)

// TrainSAE fits the SAE method's autoencoder with package sae: its
// standard ReLU + L1 SAE, trained full-batch for cfg.Epochs steps of Adam
// at cfg.LR (no warm-up or decay, as the paper's code) on the n rows of
// feats. It returns the SAE's encoder.
//
// The paper's loss is mean-squared error over every element plus
// λ·mean over rows of ‖f‖₁; package sae's is the squared error summed
// over features and averaged over rows plus λ'·mean over rows of
// Σ f_j‖d_j‖. With unit decoder rows the second is d times the first when
// λ' = d·λ, and Adam does not see a constant factor, so L1 is passed as
// d·cfg.L1. What differs: the paper's code holds encoder and decoder rows
// at unit norm (and its tied bias starts at zero), while sae's standard
// SAE lets decoder norms move (the L1 term weighs them) and starts them at
// norm 0.1 (Anthropic's April 2024 recipe); b_dec starts at zero here too.
func TrainSAE(ctx context.Context, feats []float32, n, d int, cfg SAEConfig) (func(x []float32, n int) []float32, error) {
	if len(feats) != n*d || n == 0 {
		return nil, fmt.Errorf("sae method: %d feature values for %d rows of %d", len(feats), n, d)
	}
	s, err := sae.New(sae.Standard, d, cfg.Latents, d, 0, cfg.Seed)
	if err != nil {
		return nil, err
	}
	tr := sae.NewTrainable(s, sae.TrainConfig{L1: cfg.L1 * float64(d), DeadWindow: int64(n) * int64(cfg.Epochs+1)})
	adam := train.NewAdam(tr.Params(), 0, 0, 0)
	batch := &activations.Batch{Rows: n, Width: d, X: feats}
	for epoch := 0; epoch < cfg.Epochs; epoch++ {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if _, err := tr.Backward(batch, epoch); err != nil {
			return nil, fmt.Errorf("sae method: epoch %d: %w", epoch, err)
		}
		adam.Step(tr.Params(), cfg.LR)
		tr.AfterUpdate()
	}
	return s.Encode, nil
}
