// Package sae trains, evaluates, reads and exports sparse autoencoders and
// transcoders on a model's activations.
//
// Architectures (Arch): standard (ReLU, L1 penalty weighted by decoder-row
// norms), TopK (with the AuxK loss for dead latents), BatchTopK (exported
// as JumpReLU with its learned threshold: the mean over the last fifth of
// the training steps of the smallest activation each batch kept, see
// TrainConfig.ThresholdAverageFrom), JumpReLU (rectangle-kernel
// pseudo-derivatives for the threshold, L0 penalty) and Matryoshka
// BatchTopK. A transcoder is any of them reading one hook and predicting
// another (DOut, the target's width, may differ from DIn).
//
// On the CPU everything is computed in float32 with hand-written gradients
// (each checked against finite differences in the tests): the encoder's
// dense product runs on the CPU backend's GEMM, and for the sparse
// architectures the decoder, its gradient and the encoder's gradient run
// over the active latents only. On a GPU (TrainSpec.GPU; `loupe sae train
// --device cuda`) GPUTrainable runs the same step through the cuda
// backend's SAE kernels, fp32 or with a bf16 encoder GEMM, fed in place by
// a pipeline whose buffer lives in device memory; sae/gputest checks it
// against the CPU step.
//
// Layout: SAE.Enc is [DSAE, DIn] (row j is latent j's encoder direction;
// SAELens's W_enc is its transpose), Dec is [DSAE, DOut] (SAELens's W_dec).
// Training sees activations scaled by InScale (so that E|x| = sqrt(DIn))
// and targets by OutScale; Export folds both into the weights, so the
// written SAE takes raw activations. Each context's BOS position gives no
// rows, and Data.ExcludeFirst leaves out the tokens after it too (massive
// first-token activations; RESULTS.md).
//
// saelens_compare_test.go and scripts/sae-batchtopk-saelens.sh train
// BatchTopK and Matryoshka next to SAELens's own training SAEs on the same
// exported batches.
//
// The SAELens v6 folder (cfg.json, sae_weights.safetensors,
// sparsity.safetensors) is Loupe's own on-disk format (DESIGN decision 10);
// sparsify folders are read too. The activation pipeline is package
// sae/activations, the training loop sae/train.
//
// Where things are:
//
//	sae.go         SAE, New, Encode, Decode (inference, raw activations)
//	module.go      Trainable: losses and hand-written gradients per architecture
//	job.go         Train: init sample, normalisation, b_dec, the training run
//	eval.go        Metrics and Evaluate (L0, FVU, MSE, cosine, bias, density)
//	downstream.go  the SAE spliced into the forward pass: CE loss recovered, KL
//	saelens.go     Export (SAELens v6) and Load (SAELens v6, sparsify)
//	features.go    Features (per-latent statistics, examples, W_dec·W_U) and
//	               PromptLatents, for the store's feature tables
//	gpu.go         GPUTrainable: the training step on a GPU (probe/compute/cuda/sae.go)
//	run.go         TrainRun and EvalRun, what `loupe sae train|eval` call
//	RESULTS.md     measured figures, and the command that reproduces them
package sae
