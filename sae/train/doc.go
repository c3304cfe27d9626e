// Package train is the training loop that Loupe's SAEs and codebooks share:
// a Module (anything with parameters, hand-written gradients and a loss on
// a batch) is stepped by Adam with linear warm-up and decay over batches
// from an activations.Pipeline, with atomic checkpoints that resume
// bit-identically, context cancellation that leaves a valid checkpoint,
// and a live progress line when (and only when) it writes to a terminal.
//
// A module plugs in by implementing Module:
//
//	Params      the trainable tensors, values and gradients, in fixed order
//	Backward    loss and gradients on one batch, plus the statistics to show
//	AfterUpdate constraints after each optimizer step (unit-norm decoder rows)
//	State       the non-parameter state a resume needs (dead-latent counters)
//
// A DeviceModule (a GPU) keeps its parameters and Adam moments on the
// device and does the update there; the trainer copies them to the host
// only for checkpoints and at the end of a run.
//
// Everything is deterministic given the seeds: the same module, pipeline
// and Config give bit-identical parameters whether a run went straight
// through or was stopped and resumed from any checkpoint (on the CPU; the
// GPU's atomic gathers make a GPU run reproducible only to rounding).
package train
