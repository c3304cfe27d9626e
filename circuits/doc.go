// Package circuits follows information through a transformer and finds the
// circuits that do a task:
//
//   - attention rollout and attention flow (Abnar and Zuidema 2020,
//     "Quantifying Attention Flow in Transformers"), computed exactly and
//     fast (this file's sections below);
//   - tasks: JSON-lines files of clean/corrupted prompt pairs with their
//     answer tokens, and generators for IOI, greater-than, docstring and
//     induction (task.go, taskgen.go);
//   - activation patching of heads, MLPs and residual positions, noising and
//     denoising, with logit-difference, probability and KL metrics, and
//     path patching (Wang et al. 2022) (patch.go, path.go);
//   - the graph of embeddings, heads, MLPs and logits with edges through the
//     residual stream, edges cut through the probe's split-input hooks, and
//     ACDC (Conmy et al. 2023) with threshold sweeps, its edge tests batched
//     several to a forward pass, an optional node-first pass for big
//     graphs, and a time limit after which the circuit is the graph as it
//     stands (graph.go, acdc.go);
//   - SAE circuit identification (O'Neill and Bui 2024) with the paper's own
//     autoencoder (saepaper.go) or package sae's standard SAE in its place
//     (saecircuit.go, saetrain.go);
//   - scoring against known circuits: ROC AUC, precision and recall
//     (roc.go, truth.go, find.go), and pictures (draw.go).
//
// RESULTS.md has what each method finds on the models with known circuits.
//
// # The attention graph
//
// A model with L blocks over T tokens is seen as a layered graph with a node
// (l, p) for every node layer l = 0..L and position p = 0..T-1. Node layer 0 is
// the input embeddings; node layer l > 0 is the residual stream after the l-th
// block (so block b, counted from 0 as in blocks.b.attn.hook_pattern, reads
// node layer b and writes node layer b+1).
//
// Attention alone ignores the residual connection, which carries each token's
// own state past the block. The paper models it by mixing in the identity and
// renormalising each row:
//
//	W_b = rownorm(0.5·A_b + 0.5·I),    rownorm(M)[a,c] = M[a,c] / Σ_c' M[a,c']
//
// where A_b is block b's attention (row a = query position, column c = key
// position) averaged over heads, or one head's pattern (a per-head variant:
// the head's pattern with its residual share). A row of a softmax already
// sums to 1, so the renormalisation only matters for patterns that do not,
// for example after rounding to float32. Attention here is causal: W_b[a,c] = 0
// for c > a.
//
// # Rollout
//
// Rollout treats W_b as a transition matrix and multiplies through the
// blocks. From node layer f up to node layer t (f < t):
//
//	R(f→t) = W_{t-1} · W_{t-2} · … · W_f
//
// R[j,i] is how much of position j at layer t is made of token i at layer f;
// each row sums to 1. The paper's "joint attention" is R(0→t).
//
// # Flow
//
// Flow treats the same graph as a flow network instead. Each edge
// (b+1, a) → (b, c) has capacity W_b[a,c]; the edges point from the upper
// layer down to the input, as in the paper's code. The flow of input token i
// (node (f, i)) into output position j (node (t, j)) is the value of a maximum
// flow from source (t, j) to sink (f, i):
//
//	F[j,i] = maxflow((t, j) → (f, i))
//
// Because W rows sum to 1, every value lies in [0, 1]. Unlike rollout, a flow
// is limited by its narrowest cut, so it does not dilute through many layers.
// The paper further divides each row of F by its sum before plotting; Result
// keeps the raw maximum-flow values and offers NormalizeRows for that.
//
// # Computing flow exactly and fast
//
// The paper computed each F[j,i] with networkx, one independent max-flow on
// the whole graph per pair, which takes hours on a real prompt. This package
// computes the same values (exact push-relabel on float64 capacities; values
// agree with networkx to ~1e-14 on the committed test graphs) and exploits the
// structure of the graph:
//
//   - Causality prunes. Edges only go to equal or smaller positions, so the
//     flow from (t, j) to (f, i) lives on positions i..j only.
//   - The graph is never built. Capacities are read straight from the
//     W_b matrices (and their transposes for column scans); the flow is kept
//     in packed triangular matrices of the same shape.
//   - Work is reused across sinks. For one source the sinks i = j, j-1, …, 0
//     are solved as a chain: the maximum preflow for sink i+1 is kept, the
//     position range grows by one column, the old sink's excess becomes an
//     ordinary node's excess, and push-relabel continues from there.
//     Push-relabel is correct from any preflow with a valid labelling, and
//     one is free: the minimum of the old labels and the layer number
//     (every edge goes one layer down or up, so "label = layer" is valid
//     for any flow). No work is thrown away and no search is needed to
//     switch sinks.
//   - The layers fix the label structure: a node of layer k is at least k
//     steps from the sink, so a node at that floor cannot push upwards and
//     its up-edges are never scanned; the breadth-first search of a global
//     relabel skips nodes it has already labelled with a union–find
//     "next unlabelled position" list, costing about one step per node
//     instead of one per edge.
//   - Excess moves over large edges first: from a node, first the edge to
//     the sink's own column, then the residual edge to the same position
//     (at least half the capacity), then the rest. Spreading excess thinly
//     over many small edges cost ~30x more pushes and relabels on a cold
//     solve.
//   - Work is spread across goroutines: chains (one per source, or blocks of
//     sinks for one source, each starting cold) run in parallel, each worker
//     with its own flow and label buffers.
//
// A plain Edmonds–Karp on an explicit graph lives in the tests as the
// in-package reference; networkx is the external one
// (testdata/make_flow_refs.py).
//
// # Results as a table
//
// Result.Rows maps a result to the rows of the store's table
// (source_layer, target_layer, from_pos, to_pos, value, method, head):
// information travels from token from_pos at node layer source_layer to
// position to_pos at node layer target_layer.
package circuits
