package sae

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"sort"
	"strings"

	"github.com/loupe-dev/loupe/probe"
	"github.com/loupe-dev/loupe/probe/compute"
	"github.com/loupe-dev/loupe/sae/activations"
	"github.com/loupe-dev/loupe/store"
)

// FeatureConfig sizes a feature scan.
type FeatureConfig struct {
	Tokens       int64  // tokens scanned (held-out documents)
	TopK         int    // top-activating examples per latent (default 10)
	Window       int    // tokens either side of an example (default 8)
	QuantileBins int    // activation quantile bins sampled (default 5)
	PerQuantile  int    // examples sampled per bin (default 2)
	HistBins     int    // histogram bins (default 20)
	LogitK       int    // top and bottom tokens of W_dec·W_U (default 10)
	Seed         uint64 // the quantile samples
}

func (c *FeatureConfig) defaults() {
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&c.TopK, 10)
	def(&c.Window, 8)
	def(&c.QuantileBins, 5)
	def(&c.PerQuantile, 2)
	def(&c.HistBins, 20)
	def(&c.LogitK, 10)
	if c.Tokens <= 0 {
		c.Tokens = 32768
	}
}

// FeatureSet is what a scan found, ready for the store's feature tables.
type FeatureSet struct {
	Features []store.FeatureRow
	Examples []store.FeatureExample
	Tokens   int64
}

// sparseRows holds the latents of scanned rows: row r's active latents are
// lat[start[r]:start[r+1]] (ascending), with values val.
type sparseRows struct {
	start []int
	lat   []int32
	val   []float32
}

func (sp *sparseRows) add(f []float32, n, dSAE int) {
	if len(sp.start) == 0 {
		sp.start = append(sp.start, 0)
	}
	for r := 0; r < n; r++ {
		for j, v := range f[r*dSAE : (r+1)*dSAE] {
			if v != 0 {
				sp.lat = append(sp.lat, int32(j))
				sp.val = append(sp.val, v)
			}
		}
		sp.start = append(sp.start, len(sp.lat))
	}
}

func (sp *sparseRows) value(r int, j int32) float32 {
	lat := sp.lat[sp.start[r]:sp.start[r+1]]
	i := sort.Search(len(lat), func(i int) bool { return lat[i] >= j })
	if i < len(lat) && lat[i] == j {
		return sp.val[sp.start[r]+i]
	}
	return 0
}

// Features scans held-out documents of d with s and gathers, per latent,
// its density, activation statistics and histogram, its top-activating
// windows, windows sampled from its activation quantiles, and (for SAEs
// writing the residual stream's width) the top and bottom tokens of its
// decoder row times the unembedding, W_dec·W_U (no final norm).
func Features(ctx context.Context, s *SAE, d *Data, cfg FeatureConfig) (*FeatureSet, error) {
	cfg.defaults()
	_, docs := d.split()
	src, ctxs, _, err := d.source(docs, cfg.Tokens)
	if err != nil {
		return nil, err
	}
	if src.Width() != s.DIn {
		return nil, fmt.Errorf("sae: hook %s has %d features, the SAE reads %d", d.Hook, src.Width(), s.DIn)
	}
	var sp sparseRows
	var n int64
	for n < cfg.Tokens && n < int64(len(ctxs)*src.RowsPerContext()) {
		ch, err := src.Next(ctx)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, err
		}
		sp.add(s.Encode(ch.X, ch.Rows), ch.Rows, s.DSAE)
		n += int64(ch.Rows)
	}
	per, first := src.RowsPerContext(), src.FirstPosition()
	rows := len(sp.start) - 1
	// group the (row, value) pairs by latent
	count := make([]int, s.DSAE+1)
	for _, j := range sp.lat {
		count[j+1]++
	}
	for j := 0; j < s.DSAE; j++ {
		count[j+1] += count[j]
	}
	byLat := make([]int32, len(sp.lat)) // row of each entry, grouped by latent
	byVal := make([]float32, len(sp.lat))
	fill := append([]int(nil), count[:s.DSAE]...)
	for r := 0; r < rows; r++ {
		for i := sp.start[r]; i < sp.start[r+1]; i++ {
			j := sp.lat[i]
			byLat[fill[j]], byVal[fill[j]] = int32(r), sp.val[i]
			fill[j]++
		}
	}
	logits, err := logitTable(s, d, cfg.LogitK)
	if err != nil {
		return nil, err
	}
	tok := d.Model.Tokenizer
	window := func(latent int, row int) (int, int, int, []int32, []string, []float32) {
		c, pos := row/per, row%per+first // the context's first positions (BOS) give no rows
		ctxt := ctxs[c]
		lo, hi := max(0, pos-cfg.Window), min(len(ctxt), pos+cfg.Window+1)
		ids := append([]int32(nil), ctxt[lo:hi]...)
		texts := make([]string, len(ids))
		acts := make([]float32, len(ids))
		for i, id := range ids {
			texts[i] = tok.TokenText(int(id))
			if q := lo + i; q >= first {
				acts[i] = sp.value(c*per+q-first, int32(latent))
			}
		}
		return c, pos, lo, ids, texts, acts
	}
	rng := rand.New(rand.NewPCG(cfg.Seed, 0x7a11))
	fs := &FeatureSet{Tokens: int64(rows)}
	for j := 0; j < s.DSAE; j++ {
		lo, hi := count[j], count[j+1]
		fr := store.FeatureRow{Latent: j, Density: float64(hi-lo) / float64(rows), HistCounts: make([]int32, cfg.HistBins),
			TopIDs: []int32{}, TopTexts: []string{}, TopValues: []float32{}, BottomIDs: []int32{}, BottomTexts: []string{}, BottomValues: []float32{}}
		if logits != nil {
			fr.TopIDs, fr.TopTexts, fr.TopValues = logits.top[j].ids, logits.top[j].texts, logits.top[j].vals
			fr.BottomIDs, fr.BottomTexts, fr.BottomValues = logits.bottom[j].ids, logits.bottom[j].texts, logits.bottom[j].vals
		}
		idx := make([]int, hi-lo)
		var sum float64
		for i := range idx {
			idx[i] = lo + i
			v := byVal[lo+i]
			sum += float64(v)
			fr.MaxAct = max(fr.MaxAct, v)
		}
		if len(idx) > 0 {
			fr.MeanAct = float32(sum / float64(len(idx)))
			for _, i := range idx {
				b := int(float64(byVal[i]) / float64(fr.MaxAct) * float64(cfg.HistBins))
				fr.HistCounts[min(max(b, 0), cfg.HistBins-1)]++
			}
		}
		// descending by value; ties by row, so the order is fixed
		sort.Slice(idx, func(a, b int) bool {
			if byVal[idx[a]] != byVal[idx[b]] {
				return byVal[idx[a]] > byVal[idx[b]]
			}
			return byLat[idx[a]] < byLat[idx[b]]
		})
		// the top windows, skipping repeats of one text (a small held-out set
		// is cycled to reach the scan's length)
		seen := map[string]bool{}
		rank := 0
		for _, i := range idx {
			if rank == cfg.TopK {
				break
			}
			c, pos, ws, ids, texts, acts := window(j, int(byLat[i]))
			key := fmt.Sprint(pos-ws, ids)
			if seen[key] {
				continue
			}
			seen[key] = true
			fs.Examples = append(fs.Examples, store.FeatureExample{Latent: j, Kind: "top", Rank: rank, Quantile: float32(math.NaN()),
				Context: c, Position: pos, Activation: byVal[i], WindowStart: ws, TokenIDs: ids, TokenTexts: texts, Acts: acts})
			rank++
		}
		if len(idx) >= cfg.QuantileBins*cfg.PerQuantile {
			rank := 0
			// bins of equal count over the ascending order
			for b := 0; b < cfg.QuantileBins; b++ {
				blo := len(idx) - (b+1)*len(idx)/cfg.QuantileBins
				bhi := len(idx) - b*len(idx)/cfg.QuantileBins
				q := float32(cfg.QuantileBins-1-b) / float32(cfg.QuantileBins)
				for _, k := range rng.Perm(bhi - blo)[:min(cfg.PerQuantile, bhi-blo)] {
					i := idx[blo+k]
					c, pos, ws, ids, texts, acts := window(j, int(byLat[i]))
					fs.Examples = append(fs.Examples, store.FeatureExample{Latent: j, Kind: "quantile", Rank: rank, Quantile: q,
						Context: c, Position: pos, Activation: byVal[i], WindowStart: ws, TokenIDs: ids, TokenTexts: texts, Acts: acts})
					rank++
				}
			}
		}
		fs.Features = append(fs.Features, fr)
	}
	return fs, nil
}

type tokenList struct {
	ids   []int32
	texts []string
	vals  []float32
}

type logits struct{ top, bottom []tokenList }

// writesResidual says whether an SAE's output is a residual-stream-shaped
// vector, so that W_dec·W_U means something.
func writesResidual(s *SAE, d *Data) bool {
	name := d.Hook.Name
	if d.Target != nil {
		name = d.Target.Name
	}
	if s.DOut != d.Model.Config.DModel {
		return false
	}
	for _, suf := range []string{"hook_resid_pre", "hook_resid_mid", "hook_resid_post", "hook_attn_out", "hook_mlp_out", "hook_embed", "attn.hook_result"} {
		if strings.HasSuffix(name, suf) {
			return true
		}
	}
	return false
}

// logitTable computes W_dec·W_U block by block and keeps each latent's k
// largest and smallest entries; nil when the SAE does not write the
// residual stream.
func logitTable(s *SAE, d *Data, k int) (*logits, error) {
	if !writesResidual(s, d) {
		return nil, nil
	}
	wu, err := d.Model.Param("unembed.W_U")
	if err != nil {
		return nil, err
	}
	V, D := wu.Shape[0], wu.Shape[1]
	out := &logits{top: make([]tokenList, s.DSAE), bottom: make([]tokenList, s.DSAE)}
	const blk = 128
	buf := make([]float32, blk*V)
	dec := make([]float32, blk*D)
	tok := d.Model.Tokenizer
	for lo := 0; lo < s.DSAE; lo += blk {
		hi := min(lo+blk, s.DSAE)
		for i, v := range s.Dec[lo*D : hi*D] {
			dec[i] = v / s.OutScale
		}
		compute.HostMulNT(hi-lo, V, D, 1, dec, D, wu.Data, D, 0, buf, V)
		parallelRows(hi-lo, func(a, b int) {
			var h topHeap
			neg := make([]float32, V)
			for r := a; r < b; r++ {
				row := buf[r*V : (r+1)*V]
				h.top(row, k)
				out.top[lo+r] = sortedList(h.idx, row, tok, false)
				for i, v := range row {
					neg[i] = -v
				}
				h.top(neg, k)
				out.bottom[lo+r] = sortedList(h.idx, row, tok, true)
			}
		})
	}
	return out, nil
}

func sortedList(idx []int32, row []float32, tok interface{ TokenText(int) string }, asc bool) tokenList {
	ids := append([]int32(nil), idx...)
	sort.Slice(ids, func(a, b int) bool {
		if asc {
			return row[ids[a]] < row[ids[b]]
		}
		return row[ids[a]] > row[ids[b]]
	})
	l := tokenList{ids: ids, texts: make([]string, len(ids)), vals: make([]float32, len(ids))}
	for i, id := range ids {
		l.texts[i] = tok.TokenText(int(id))
		l.vals[i] = row[id]
	}
	return l
}

// PromptLatents runs prompts through the model and gives, per token, the
// latents active at the SAE's hook (largest first). The BOS position is
// included, though SAEs are not trained on it.
func PromptLatents(ctx context.Context, s *SAE, m *probe.Loaded, hook activations.HookPoint, prompts []string) ([]store.FeatureActs, error) {
	var out []store.FeatureActs
	for p, text := range prompts {
		ids, err := m.Tokenizer.Encode(text, true)
		if err != nil {
			return nil, err
		}
		if len(ids) == 0 {
			return nil, fmt.Errorf("prompt %d gives no tokens", p)
		}
		if bos := m.Tokenizer.BOS(); bos >= 0 && ids[0] != bos {
			ids = append([]int{bos}, ids...)
		}
		ctxs := [][]int32{make([]int32, len(ids))}
		for i, id := range ids {
			ctxs[0][i] = int32(id)
		}
		src, err := activations.NewModelSource(m.Model, activations.ModelConfig{Hook: hook, Contexts: ctxs, SeqsPerForward: 1})
		if err != nil {
			return nil, err
		}
		ch, err := src.Next(ctx)
		if err != nil {
			return nil, err
		}
		if src.Width() != s.DIn {
			return nil, fmt.Errorf("sae: hook %s has %d features, the SAE reads %d", hook, src.Width(), s.DIn)
		}
		f := s.Encode(ch.X, ch.Rows)
		for t := 0; t < ch.Rows; t++ {
			row := f[t*s.DSAE : (t+1)*s.DSAE]
			var lat []int32
			for j, v := range row {
				if v != 0 {
					lat = append(lat, int32(j))
				}
			}
			sort.Slice(lat, func(a, b int) bool { return row[lat[a]] > row[lat[b]] || row[lat[a]] == row[lat[b]] && lat[a] < lat[b] })
			vals := make([]float32, len(lat))
			for i, j := range lat {
				vals[i] = row[j]
			}
			if lat == nil {
				lat = []int32{}
			}
			out = append(out, store.FeatureActs{PromptID: p, Position: t, TokenID: int32(ids[t]), TokenText: m.Tokenizer.TokenText(ids[t]), Latents: lat, Values: vals})
		}
	}
	return out, nil
}
