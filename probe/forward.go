package probe

import (
	"context"
	"fmt"

	"github.com/loupe-dev/loupe/probe/compute"
)

type tensor = compute.Tensor

// LogitMode says which positions' logits a forward pass returns.
type LogitMode int

const (
	LogitsAll  LogitMode = iota // every position: [batch, pos, vocab]
	LogitsLast                  // the last position of each sequence: [batch, 1, vocab]
	LogitsNone                  // none (activations only)
)

// Options configures one forward pass.
type Options struct {
	Hooks  *Hooks
	Logits LogitMode
	// Chunk > 0 runs prompts longer than Chunk in pieces of Chunk positions
	// through a KV cache (chunked prefill, chunk.go): activations take
	// O(Chunk) memory per layer instead of O(T). Results equal an
	// unchunked run's up to float rounding; caching or editing attention
	// scores or patterns is refused, and edits see one piece at a time.
	Chunk int
	// MemoryLimit is the bytes the pass may allocate (0: the host's
	// available memory). A pass estimated to need more is refused before
	// it starts, with the longest prompt that would fit.
	MemoryLimit uint64
	// From, when set, starts the pass at a block on a given residual
	// stream: the embeddings and the blocks before it are not run and
	// their hooks do not fire. Circuit discovery uses it to rerun only the
	// blocks an edit can change.
	From *Resume
}

// Resume is where a pass starts (Options.From): block Layer, on Resid, the
// value blocks.Layer.hook_resid_pre held in a pass over the same batch
// (float32 [B·T, d_model] in that pass's padded layout).
type Resume struct {
	Layer int
	Resid []float32
}

// Result is what a forward pass returns.
type Result struct {
	Batch int   // sequences
	Len   int   // padded length: every sequence is left-padded to it
	Pad   []int // left padding of each sequence
	Vocab int
	// Logits is [Batch, Len, Vocab] (LogitsAll) or [Batch, 1, Vocab]
	// (LogitsLast), padded positions included.
	Logits  []float32
	mode    LogitMode
	Cache   map[string]*Activation
	Reduced []*Reduced
}

// LogitsAt gives sequence b's logits at its own position t (0 is its first
// real token; -1 is its last). It returns nil when the pass did not keep
// that position.
func (r *Result) LogitsAt(b, t int) []float32 {
	n := r.Len - r.Pad[b]
	if t < 0 {
		t += n
	}
	if t < 0 || t >= n {
		return nil
	}
	switch r.mode {
	case LogitsAll:
		row := b*r.Len + r.Pad[b] + t
		return r.Logits[row*r.Vocab : (row+1)*r.Vocab]
	case LogitsLast:
		if t != n-1 {
			return nil
		}
		return r.Logits[b*r.Vocab : (b+1)*r.Vocab]
	}
	return nil
}

// pass is the state of one forward pass: the batch's shape, positions and
// mask, the KV cache being filled, and the hooks. Hook errors are sticky:
// the first one stops the pass.
type pass struct {
	m     *Model
	b     compute.Backend
	hooks *hookSet
	B, T  int // sequences, new positions per sequence
	past  int // cached positions before these
	pos   []int
	mask  compute.AttnMask
	kv    *kvCache
	from  *Resume // start at this block (Options.From)
	err   error
	// greedy makes a LogitsLast pass return no logits but the argmax of
	// each sequence's, in argmax (found where the logits are: on a GPU
	// only B integers come back).
	greedy bool
	argmax []int
	// oResid, when set, is the residual that the attention's output
	// projection adds in its own product (compute.LinearAdd): attention
	// then returns resid_mid, not attn_out (llama.go's fused residuals).
	oResid tensor
	// qkRotated: q and k reach attend already rotated (llama.go's fused
	// q/k/v product).
	qkRotated bool
}

// Forward runs a batch of token-id sequences. Sequences of different
// lengths are left-padded; padded keys are masked and positions count from
// each sequence's first real token, as Hugging Face's generate does.
func (m *Model) Forward(ctx context.Context, batch [][]int, opt Options) (*Result, error) {
	if err := m.checkBatch(batch); err != nil {
		return nil, err
	}
	hs, err := newHookSet(opt.Hooks)
	if err != nil {
		return nil, err
	}
	B := len(batch)
	T := 0
	for _, s := range batch {
		T = max(T, len(s))
	}
	ids := make([]int, B*T)
	pads := make([]int, B)
	valid := make([]bool, B*T)
	pos := make([]int, B*T)
	padded := false
	for b, s := range batch {
		pads[b] = T - len(s)
		padded = padded || pads[b] > 0
		for t := range T {
			if t >= pads[b] {
				ids[b*T+t] = s[t-pads[b]]
				valid[b*T+t] = true
				pos[b*T+t] = t - pads[b]
			} else {
				pos[b*T+t] = 1 // as HF's masked_fill(mask == 0, 1)
			}
		}
	}
	kvCap, chunk := 0, 0
	if opt.Chunk > 0 && T > opt.Chunk {
		kvCap, chunk = T, opt.Chunk
	}
	if err := m.checkMemory(hs, opt.Logits, opt.MemoryLimit, B, T, 0, kvCap, chunk); err != nil {
		return nil, err
	}
	if f := opt.From; f != nil {
		switch {
		case chunk > 0:
			return nil, fmt.Errorf("a pass resumed at a block (Options.From) cannot be chunked")
		case f.Layer < 0 || f.Layer >= m.Config.Layers:
			return nil, fmt.Errorf("resume at block %d: the model has blocks 0..%d", f.Layer, m.Config.Layers-1)
		case len(f.Resid) != B*T*m.Config.DModel:
			return nil, fmt.Errorf("resume at block %d: residual stream of %d values, want %d x %d x %d", f.Layer, len(f.Resid), B, T, m.Config.DModel)
		}
	}
	var logits []float32
	if chunk > 0 {
		kv := newKVCache(m, B, T)
		defer compute.Free(m.backend, append(kv.k, kv.v...)...)
		if !padded {
			valid = nil
		}
		logits, err = m.prefillChunks(ctx, hs, ids, pos, valid, B, T, opt.Chunk, kv, opt.Logits)
	} else {
		p := &pass{m: m, b: m.backend, hooks: hs, B: B, T: T, pos: pos,
			mask: compute.AttnMask{Causal: true}, from: opt.From}
		if padded {
			p.mask.KeyValid = valid
		}
		logits, err = p.run(ctx, ids, opt.Logits)
	}
	if err != nil {
		return nil, err
	}
	r := &Result{Batch: B, Len: T, Pad: pads, Vocab: m.Config.Vocab, Logits: logits, mode: opt.Logits}
	if hs != nil {
		r.Cache, r.Reduced = hs.cache, hs.reduce
	}
	return r, nil
}

func (m *Model) checkBatch(batch [][]int) error {
	if len(batch) == 0 {
		return fmt.Errorf("empty batch: no prompt to run")
	}
	for i, s := range batch {
		if len(s) == 0 {
			return fmt.Errorf("prompt %d is empty (no tokens)", i)
		}
		if m.Config.MaxPos > 0 && len(s) > m.Config.MaxPos {
			return fmt.Errorf("prompt %d has %d tokens, longer than the model's context of %d (max_position_embeddings)", i, len(s), m.Config.MaxPos)
		}
		for _, id := range s {
			if id < 0 || id >= m.Config.Vocab {
				return fmt.Errorf("prompt %d: token id %d outside the vocabulary [0, %d)", i, id, m.Config.Vocab)
			}
		}
	}
	return nil
}

// run embeds ids [B*T], runs every block and returns the requested logits.
// On a backend with a memory pool the pass is one scope and each block a
// scope inside it (compute.Scoped), so device temporaries go back to the
// pool as the pass goes; a device failure (memory running out) ends the
// pass with its error and leaves the model usable.
func (p *pass) run(ctx context.Context, ids []int, mode LogitMode) (logits []float32, err error) {
	scope := compute.Mark(p.b)
	defer func() {
		if rerr := compute.Release(p.b, scope); rerr != nil && err == nil {
			logits, err = nil, rerr
		}
		// The cache copies queued during the pass land here (hooks.go).
		if cerr := p.hooks.finish(); cerr != nil && err == nil {
			logits, err = nil, cerr
		}
	}()
	return p.runBlocks(ctx, ids, mode)
}

func (p *pass) runBlocks(ctx context.Context, ids []int, mode LogitMode) ([]float32, error) {
	m, b := p.m, p.b
	first := 0
	var x compute.Tensor
	if p.from != nil {
		x, first = b.FromHost(p.from.Resid, p.B*p.T, m.Config.DModel), p.from.Layer
	} else {
		x = b.Embed(m.embed, ids)
		if m.Config.EmbedScale != 0 {
			b.ScaleInPlace(x, m.Config.EmbedScale) // Gemma: hook_embed is the scaled embedding
		}
		x = p.hook(-1, "hook_embed", x, p.resid())
		if m.posEmbed != nil {
			pe := p.hook(-1, "hook_pos_embed", b.Embed(m.posEmbed, p.pos), p.resid())
			x = b.Add(x, pe)
		}
	}
	for i := first; i < len(m.layers); i++ {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		block := compute.Mark(b)
		switch m.Config.Family {
		case FamilyLlama:
			x = p.llamaBlock(i, x)
		case FamilyGPT2:
			x = p.gpt2Block(i, x)
		case FamilyGPTNeoX:
			x = p.neoxBlock(i, x)
		case FamilyGemma3:
			x = p.gemma3Block(i, x)
		}
		if err := compute.Release(b, block, x); err != nil && p.err == nil {
			p.err = fmt.Errorf("layer %d: %w", i, err)
		}
		if p.err != nil {
			return nil, p.err
		}
	}
	if mode == LogitsNone && !p.hooks.active("ln_final.hook_normalized") {
		return nil, nil
	}
	if mode == LogitsLast {
		last := make([]int, p.B)
		for s := range last {
			last[s] = s*p.T + p.T - 1
		}
		x = b.GatherRows(x, last)
	}
	final := p.finalNorm(x)
	rows := p.T
	if mode == LogitsLast {
		rows = 1
	}
	final = p.hook(-1, "ln_final.hook_normalized", final, []int{p.B, rows, m.Config.DModel})
	if mode == LogitsNone {
		return nil, p.err
	}
	logits := p.hook(-1, "logits", b.Linear(final, m.unembed, nil), []int{p.B, rows, m.Config.Vocab})
	if p.err != nil {
		return nil, p.err
	}
	if p.greedy && mode == LogitsLast {
		p.argmax = b.ArgmaxRows(logits) // ties to the lowest id, as sample
		return nil, nil
	}
	return b.ToHost(logits), nil
}

// finalNorm is the family's last norm, ln_final.
func (p *pass) finalNorm(x tensor) tensor {
	switch p.m.Config.Family {
	case FamilyLlama, FamilyGemma3: // Gemma's (1 + w) is in lnFinalW
		return p.llamaFinal(x)
	}
	return p.layerNormFinal(x)
}

// hook passes t through the hook point of layer i (i < 0 for the points
// outside the blocks). shape is the activation's TransformerLens shape.
func (p *pass) hook(i int, suffix string, t tensor, shape []int) tensor {
	if p.hooks == nil || p.err != nil {
		return t
	}
	name := suffix
	if i >= 0 {
		name = p.name(i, suffix)
	}
	out, err := p.hooks.point(p.b, name, t, shape)
	if err != nil {
		p.err = err
		return t
	}
	return out
}

// name gives "blocks.i.suffix" from the model's table of hook names.
func (p *pass) name(i int, suffix string) string {
	if names, ok := p.m.blockHookNames[suffix]; ok {
		return names[i]
	}
	return hookName(i, suffix)
}

func (p *pass) resid() []int    { return []int{p.B, p.T, p.m.Config.DModel} }
func (p *pass) mlpShape() []int { return []int{p.B, p.T, p.m.Config.DMLP} }

// attnOutFromResults computes each head's write to the residual stream,
// hook_result [B, T, H, d_model] = z_h·W_O,hᵀ, and passes it through its
// hook; when an edit changed it, the attention output is the sum of the
// heads plus the output bias. Only runs that hook hook_result pay for it.
func (p *pass) attnOutFromResults(i int, z tensor) tensor {
	m, b, ly := p.m, p.b, &p.m.layers[i]
	H, Dh, D := m.Config.Heads, m.Config.HeadDim, m.Config.DModel
	N := p.B * p.T
	// Each head's write z_h·W_O,hᵀ [N, D], stacked head-major into [H*N, D]
	// by row copies, then gathered into [N*H, D] (row n*H+h) and viewed as
	// the hook's [N, H*D]: everything stays on the backend (no host round
	// trip on a GPU).
	stack := b.Zeros(H*N, D)
	for h := 0; h < H; h++ {
		b.CopyRowsInPlace(stack, b.Linear(b.Columns(z, h*Dh, (h+1)*Dh), b.Columns(ly.wo, h*Dh, (h+1)*Dh), nil), h*N)
	}
	order := make([]int, N*H)
	for n := 0; n < N; n++ {
		for h := 0; h < H; h++ {
			order[n*H+h] = h*N + n
		}
	}
	all := b.Reshape(b.GatherRows(stack, order), N, H*D)
	name := p.name(i, "attn.hook_result")
	res := p.hook(i, "attn.hook_result", all, []int{p.B, p.T, H, D})
	if !p.hooks.edits(name) {
		// Unchanged results: one product keeps the run bit-identical to a
		// run that does not look at them.
		return b.Linear(z, ly.wo, ly.bo)
	}
	// hook_attn_out is the sum of the (edited) heads, added in head order.
	out := b.Columns(res, 0, D)
	for h := 1; h < H; h++ {
		out = b.Add(out, b.Columns(res, h*D, (h+1)*D))
	}
	if ly.bo != nil {
		b.AddInPlace(out, ly.bo)
	}
	return out
}
