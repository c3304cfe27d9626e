package sae

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/loupe-dev/loupe/sae/activations"
	"github.com/loupe-dev/loupe/sae/train"
)

// TestBatchTopKExcludeFirstResumes: a BatchTopK run that leaves out the
// first two tokens after BOS, stopped inside the threshold's averaging
// window (the last fifth of 24 steps) and resumed, writes the weights and
// threshold of the uninterrupted run bit for bit; the exclusion reaches
// the evaluation (tokens counted without those positions), eval.json and
// the exported cfg.json.
func TestBatchTopKExcludeFirstResumes(t *testing.T) {
	m, docs := organismDocs(t)
	mk := func(out string, resume bool, onStep func(int, train.Stats)) RunConfig {
		return RunConfig{
			Data: Data{Model: m, ModelName: "organism", Docs: docs, ContextSize: 19, ExcludeFirst: 2,
				Hook: activations.HookPoint{Name: "blocks.2.hook_resid_post", Head: -1}, SeqsPerForward: 4},
			Spec: TrainSpec{Arch: BatchTopK, DSAE: 512, K: 8, Tokens: 128 * 24, BatchRows: 128, LR: 1e-3, Seed: 4,
				Normalize: true, CheckpointEvery: 128 * 5, Resume: resume, OnStep: onStep, Loss: TrainConfig{DeadWindow: 256}},
			Out: out, EvalTokens: 16 * 10, BufferRows: 640,
		}
	}
	dir := t.TempDir()
	a := filepath.Join(dir, "a")
	if _, _, err := TrainRun(context.Background(), mk(a, false, nil)); err != nil {
		t.Fatal(err)
	}
	want, _ := os.ReadFile(filepath.Join(a, WeightsFile))
	b := filepath.Join(dir, "b")
	ctx, cancel := context.WithCancel(context.Background())
	_, _, err := TrainRun(ctx, mk(b, false, func(step int, _ train.Stats) {
		if step == 21 { // averaging runs from step 20 (0-based) of 24
			cancel()
		}
	}))
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled run: %v", err)
	}
	_, rep, err := TrainRun(context.Background(), mk(b, true, nil))
	if err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(filepath.Join(b, WeightsFile))
	if !bytes.Equal(got, want) {
		t.Fatal("the resumed run's weights or threshold differ from the uninterrupted run's")
	}
	// 19-token contexts less BOS and two more: 16 rows each
	if rep.EvalTokens != 160 {
		t.Errorf("evaluated %d tokens, want 160", rep.EvalTokens)
	}
	var ev struct {
		Excl int `json:"excluded_tokens_after_bos"`
	}
	js, _ := os.ReadFile(filepath.Join(b, "eval.json"))
	if err := json.Unmarshal(js, &ev); err != nil || ev.Excl != 2 {
		t.Errorf("eval.json: excluded_tokens_after_bos %d (%v), want 2", ev.Excl, err)
	}
	s, err := Load(b)
	if err != nil {
		t.Fatal(err)
	}
	if s.Meta.ExcludeFirst != 2 {
		t.Errorf("cfg.json read back: ExcludeFirst %d, want 2", s.Meta.ExcludeFirst)
	}
	d := Data{Model: m, Docs: docs, ContextSize: 3, ExcludeFirst: 2, Hook: activations.HookPoint{Name: "blocks.2.hook_resid_post", Head: -1}}
	if _, _, _, err := d.source(docs, 10); err == nil {
		t.Error("contexts of 3 tokens less BOS and 2 more: no error")
	}
}
