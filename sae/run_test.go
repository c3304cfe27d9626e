package sae

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/loupe-dev/loupe/organism"
	"github.com/loupe-dev/loupe/organism/corpus"
	"github.com/loupe-dev/loupe/probe"
	"github.com/loupe-dev/loupe/sae/activations"
	"github.com/loupe-dev/loupe/sae/train"
)

// TestTrainRunResumesBitIdentically: the whole pipeline (forward passes on
// the organism, shuffling buffer, TopK SAE with AuxK, Adam) stopped by a
// cancelled context and resumed from the checkpoint that left writes the
// same weights, bit for bit, as a run that was never stopped.
func TestTrainRunResumesBitIdentically(t *testing.T) {
	m, docs := organismDocs(t)
	mk := func(out string, resume bool, onStep func(int, train.Stats)) RunConfig {
		return RunConfig{
			Data: Data{Model: m, ModelName: "organism", Docs: docs, ContextSize: 17,
				Hook: activations.HookPoint{Name: "blocks.2.hook_resid_post", Head: -1}, SeqsPerForward: 4},
			Spec: TrainSpec{Arch: TopK, DSAE: 512, K: 8, Tokens: 128 * 24, BatchRows: 128, LR: 1e-3, Seed: 4,
				Normalize: true, CheckpointEvery: 128 * 5, Resume: resume, OnStep: onStep, Loss: TrainConfig{DeadWindow: 256}},
			Out: out, EvalTokens: 256, BufferRows: 640,
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
		if step == 13 {
			cancel()
		}
	}))
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled run: %v", err)
	}
	if _, err := os.Stat(filepath.Join(b, WeightsFile)); err == nil {
		t.Fatal("a cancelled run exported an SAE")
	}
	if _, _, err := TrainRun(context.Background(), mk(b, true, nil)); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(filepath.Join(b, WeightsFile))
	if !bytes.Equal(got, want) {
		t.Fatal("the resumed run's weights differ from the uninterrupted run's")
	}
}

// organismDocs loads the embedded organism and 200 documents of its
// synthetic corpus (seed 3), what the whole-pipeline tests train on.
func organismDocs(t *testing.T) (*probe.Loaded, []string) {
	t.Helper()
	m, err := organism.Load(nil)
	if err != nil {
		t.Fatal(err)
	}
	g := corpus.New(3)
	docs := make([]string, 200)
	for i := range docs {
		docs[i] = g.Document()
	}
	return m, docs
}

// A run whose k does not suit its architecture is refused before its
// output folder is made, so it leaves nothing behind.
func TestTrainRunRefusesBadKBeforeItsFolder(t *testing.T) {
	out := filepath.Join(t.TempDir(), "sae")
	for _, spec := range []TrainSpec{{Arch: TopK, DSAE: 16, K: 0}, {Arch: BatchTopK, DSAE: 16, K: 17}, {Arch: "gated", DSAE: 16}} {
		if _, _, err := TrainRun(context.Background(), RunConfig{Spec: spec, Out: out}); err == nil {
			t.Errorf("%s with k %d of %d: no error", spec.Arch, spec.K, spec.DSAE)
		}
		if _, err := os.Stat(out); err == nil {
			t.Fatalf("%s with k %d: the refused run made %s", spec.Arch, spec.K, out)
		}
	}
}
