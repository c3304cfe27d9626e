package heads

import (
	"context"
	"fmt"
	"strconv"

	"github.com/loupe-dev/loupe/probe"
)

// SinkOptions configure SinkScores.
type SinkOptions struct {
	// Sink is the number of initial tokens that form the attention sink
	// (default 4, StreamingLLM's choice).
	Sink int
	// Window is the recent window in keys, the current token included
	// (default 64; DuoAttention's streaming heads keep a sink and a recent
	// window, sized for long contexts; scale it to the text).
	Window int

	// materialise runs every layer through the scores → softmax → mix path
	// (tests compare it with the fused path).
	materialise bool
}

func (o SinkOptions) withDefaults() SinkOptions {
	if o.Sink <= 0 {
		o.Sink = 4
	}
	if o.Window <= 0 {
		o.Window = 64
	}
	return o
}

// SinkMass summarises one head's attention pattern a (T×T): the mean over
// queries q ≥ sink of the mass on keys [0, sink); the mean over queries
// q ≥ sink+window of the mass on the recent window (q−window, q]; and the
// mean over those same queries of the mass on the sink and the window
// together, which is the share of attention a streaming (sink + recent
// window) cache would keep. A value is NaN when no query qualifies.
func SinkMass(a []float32, T, sink, window int) (sinkMass, recent, streaming float64) {
	var ns, nw int
	for q := sink; q < T; q++ {
		row := a[q*T : q*T+T]
		s := 0.0
		for k := 0; k < sink; k++ {
			s += float64(row[k])
		}
		sinkMass += s
		ns++
		if q < sink+window {
			continue
		}
		r := 0.0
		for k := q - window + 1; k <= q; k++ {
			r += float64(row[k])
		}
		recent += r
		streaming += s + r
		nw++
	}
	return sinkMass / float64(ns), recent / float64(nw), streaming / float64(nw)
}

// SinkScores measures attention sinks and streaming heads on text: the
// "sink" score is the attention mass on the first Sink tokens (StreamingLLM,
// Xiao et al. 2023), the "streaming" score the mass on the sink and the
// recent Window together (the pattern of DuoAttention's streaming heads,
// Xiao et al. 2024); the streaming score carries the recent-window mass
// alone as the detail "recent". Sequences are cut to the shortest one.
//
// Thresholds are Loupe's (the papers define none per head): a sink head puts
// at least half its attention on the sink; a streaming head keeps at least
// 0.9 of its attention inside sink + window.
func SinkScores(ctx context.Context, m *probe.Model, seqs [][]int, o SinkOptions) ([]*Score, error) {
	o = o.withDefaults()
	if len(seqs) == 0 {
		return nil, fmt.Errorf("sink: no sequences")
	}
	T := len(seqs[0])
	for _, s := range seqs {
		T = min(T, len(s))
	}
	if T <= o.Sink+o.Window {
		return nil, fmt.Errorf("sink: sequences of %d tokens are too short for a sink of %d and a window of %d", T, o.Sink, o.Window)
	}
	batch := make([][]int, len(seqs))
	for i, s := range seqs {
		batch[i] = s[:T]
	}
	L, H := m.Config.Layers, m.Config.Heads
	sink := &Score{Name: ScoreSink, Values: NewMap(L, H), Threshold: 0.5,
		Source: "StreamingLLM (Xiao et al. 2023) attention sink: mass on the first " + strconv.Itoa(o.Sink) + " tokens; threshold 0.5 (Loupe)"}
	stream := &Score{Name: ScoreStreaming, Values: NewMap(L, H), Threshold: 0.9,
		Source: "DuoAttention (Xiao et al. 2024) streaming head: mass on sink + recent " + strconv.Itoa(o.Window) + " tokens; threshold 0.9 (Loupe)"}
	recent := stream.detail("recent")
	nb := float64(len(batch))
	// Per head, summed over the queries that qualify: the mass on the sink
	// (queries q ≥ sink), and the masses on the recent window and on the
	// sink (queries q ≥ sink+window). The fused attention computes them
	// without building the pattern.
	var sinkRows, windowRows []int
	for q := o.Sink; q < T; q++ {
		sinkRows = append(sinkRows, q)
		if q >= o.Sink+o.Window {
			windowRows = append(windowRows, q)
		}
	}
	hooks := &probe.Hooks{Reduce: []probe.Reduction{
		{Hook: patternHook, Op: probe.SpanMass, Lo: 0, Hi: o.Sink, Rows: sinkRows, SumRows: true},
		{Hook: patternHook, Op: probe.SpanMass, Lo: 1 - o.Window, Hi: 1, LoRelative: true, HiRelative: true, Rows: windowRows, SumRows: true},
		{Hook: patternHook, Op: probe.SpanMass, Lo: 0, Hi: o.Sink, Rows: windowRows, SumRows: true},
	}}
	if o.materialise {
		hooks.Edit = []probe.Edit{identityPatternEdit()}
	}
	ns, nw := float64(len(sinkRows)), float64(len(windowRows))
	for start := 0; start < len(batch); start += 4 {
		part := batch[start:min(start+4, len(batch))]
		r, err := m.Forward(ctx, part, probe.Options{Hooks: hooks, Logits: probe.LogitsNone, Chunk: prefillChunk(o.materialise)})
		if err != nil {
			return nil, fmt.Errorf("sink: %w", err)
		}
		for i := 0; i+2 < len(r.Reduced); i += 3 {
			l, err := layerOf(r.Reduced[i].Hook)
			if err != nil {
				return nil, fmt.Errorf("sink: %w", err)
			}
			sm, rm, wsm := r.Reduced[i].Values, r.Reduced[i+1].Values, r.Reduced[i+2].Values
			for b := range part {
				for h := 0; h < H; h++ {
					bh := b*H + h
					sink.Values.Add(l, h, float64(sm[bh])/ns/nb)
					recent.Add(l, h, float64(rm[bh])/nw/nb)
					stream.Values.Add(l, h, (float64(wsm[bh])+float64(rm[bh]))/nw/nb)
				}
			}
		}
	}
	for _, sc := range []*Score{sink, stream} {
		sc.setInfo("sequences", strconv.Itoa(len(batch)))
		sc.setInfo("tokens", strconv.Itoa(T))
		sc.setInfo("sink", strconv.Itoa(o.Sink))
		sc.setInfo("window", strconv.Itoa(o.Window))
	}
	return []*Score{sink, stream}, nil
}
