// Package heads scores what every attention head of a model does, with the
// task that each score's paper uses, and checks the scores causally by
// ablating heads.
//
// Every scorer returns a *Score: one value per (layer, head) in a Map, the
// threshold at which a head gets the score's label, where the definition and
// the threshold come from, and per-head details. The scorers need only a
// *probe.Model; the task generators that turn text into prompts take a
// Tokenizer. No scorer builds a T×T pattern: every score that reads
// attention (previous-token, duplicate-token, induction, sink, streaming,
// retrieval, lookback, temporal) is a sum of attention weights over cells
// that the task fixes, so it asks the forward pass for reductions
// (probe.Reduction: top-k keys, span masses, key-set masses, summed per head
// over the queries it needs), which the backend's fused attention computes
// from the exact softmax without storing it. Memory grows linearly in the
// context. The definitions on full patterns (DetectionScore, SinkMass) stay
// as the references the tests compare against.
//
// # Previous-token, duplicate-token, induction (Detect)
//
// TransformerLens's head detector (transformer_lens/head_detector.py) on
// repeated random tokens: sequences BOS + r + r, r of n uniformly drawn
// tokens. A head's pattern A (T×T) is compared with a 0/1 detection pattern
// D:
//
//	previous token   D[q][q−1] = 1
//	duplicate token  D[q][k] = 1 for k < q with tok[k] = tok[q]
//	induction        D[q][k] = 1 for k ≥ 1 with tok[k−1] = tok[q] (duplicate shifted right)
//
//	mul (default):   score = Σ A⊙D / Σ A        abs: score = 1 − Σ|A−D| / T
//
// with exclude_bos (zero key 0) and exclude_current_token (zero the
// diagonal) off by default, and per-sequence scores averaged. Under mul a
// perfect induction or duplicate head scores n/T ≈ 0.5 (the first half has
// nothing to match); the detail "second_half" renormalises to the repeated
// half. Labels: previous token ≥ 0.4; duplicate and induction when
// second_half ≥ 0.4 (the thresholds of ARENA's detectors).
//
// # Attention sinks and streaming heads (SinkScores)
//
// On text, per head: sink = mean over queries of the attention on the first
// S tokens (S = 4, StreamingLLM, Xiao et al. 2023); streaming = mean over
// queries q ≥ S+W of the attention on the sink and the recent window
// (q−W, q] (the pattern a DuoAttention streaming head keeps, Xiao et al.
// 2024), with the window alone as the detail "recent". Loupe's labels:
// sink ≥ 0.5, streaming ≥ 0.9 (the papers give no per-head threshold).
//
// # Retrieval (Retrieval)
//
// Wu et al. 2024, "Retrieval Head Mechanistically Explains Long-Context
// Factuality". Needle-in-a-haystack prompts are decoded greedily. At each
// decoding step whose new token w is also a token of the needle's answer
// span [s, e) of the prompt, a head counts the step when its top-1 attended
// position i (from the query that produced w) lies in [s, e) and prompt[i] =
// w. A case's score is (count)/(e − s), the share of the needle the head
// copies; the head's score is the mean over the cases (context lengths ×
// depths × needles) whose answer reached ROUGE-1 recall > 0.5 against the
// needle, as in the paper's code. Label: ≥ 0.1 (the paper's threshold).
// DefaultNIAH generates haystacks, needles, lengths and depths by code.
//
// # Successor heads (Successor)
//
// Gould et al. 2023, "Successor Heads: Recurring, Interpretable Attention
// Heads In The Wild". The effective OV circuit of head (l, h) sends token t
// to logits
//
//	OV(t) = W_U · norm_f( W_O^h W_V^h · norm1_l( x_t ) ),   x_t = W_E[t] + MLP_0(norm2_0(W_E[t]))
//
// where x_t is the token's embedding after the first MLP (the residual
// stream after block 0 with its attention removed, and no position) and
// biases are left out. For every token t of an ordinal task (digits, number
// words, ordinals, days, months, letters, roman numerals) the head is right
// when, among the task's tokens, OV(t) is largest at succ(t). The succession
// score is the fraction right over all tasks' tokens that have a successor.
// Label: ≥ 0.5 (Loupe; Gould et al. rank heads by the score and find the
// successor heads of GPT-2, Pythia and Llama-2 far above the rest).
//
// # Temporal heads (Temporal)
//
// Park et al. 2025, "Does Time Have Its Place? Temporal Heads: Where
// Language Models Recall Time-specific Information". Prompt pairs (A, B)
// differ only in the year; their answers a, b differ. With
// LD(x) = logit_x(a) − logit_x(b) at the last position, patching head h's
// output (hook_z, every position) from B into A gives
//
//	effect_h = (LD(A) − LD(A with h from B)) / (LD(A) − LD(B))
//
// (1: the head carries all of the year's effect); pairs the model does not
// separate (LD(A) − LD(B) < 1) are skipped. The same is measured on
// control pairs of time-invariant facts that differ in the subject instead.
// temporal = mean temporal effect − max(0, mean control effect), with both
// effects and the head's attention from the answer position to the year's
// tokens ("time_attention") as details. Label: ≥ 0.1 (Loupe).
//
// # Lookback ratio (Lookback)
//
// Chuang et al. 2024, "Lookback Lens". While the model continues a context
// of N tokens, at each step t ≥ 1 a head's ratio is
// A_ctx/(A_ctx + A_new), A_ctx the mean attention per context token and
// A_new the mean per generated token; the score is its mean over steps and
// prompts. No threshold (the paper trains a classifier on the ratios).
//
// # Causal check (Ablate)
//
// A task's accuracy with the named heads zero-ablated (their hook_z set to
// zero), against as many random other heads over several seeds, as Wu et al.
// do for retrieval heads: tasks niah (share of needles retrieved), successor
// (greedy next item of a comma-separated ordinal run, "March, April, May,"
// → " June"), temporal (the year's answer beats the other year's) and
// induction (greedy next token on the repeated half).
//
// # Tasks for other models
//
// Classify runs a Suite: the inputs of every score. DefaultSuite builds one
// from a tokenizer (generated haystacks, the default needles, ordinal word
// lists, temporal and control facts); a model with its own data (a planted
// model, the project's model organism) fills a Suite with its own cases and
// calls the same scorers. Records and StoreRows turn scores into JSON lines
// and the store's head_scores rows.
package heads
