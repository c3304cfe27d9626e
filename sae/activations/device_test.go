package activations

import (
	"context"
	"slices"
	"testing"

	"github.com/loupe-dev/loupe/organism"
)

// TestPipelineOnDeviceGivesTheHostBatches runs the device mode (the
// shuffling buffer and the batches as tensors on the model's backend, the
// hook's rows copied there from inside the forward pass) on the CPU backend,
// where the same code path runs, and asks for the very batches of the host
// mode, across a generation boundary and a restore, for an SAE hook, a
// per-head hook and a transcoder pair.
func TestPipelineOnDeviceGivesTheHostBatches(t *testing.T) {
	m, err := organism.Load(nil)
	if err != nil {
		t.Fatal(err)
	}
	docs := []string{"The day after Monday is Tuesday.", "one two three four five six seven eight nine ten", "a b c d e f g"}
	ctxs, _, err := Contexts(m.Tokenizer, docs, 12, 9, true)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		hook   HookPoint
		target *HookPoint
	}{
		{"resid", HookPoint{Name: "blocks.1.hook_resid_post", Head: -1}, nil},
		{"head", HookPoint{Name: "blocks.2.attn.hook_z", Head: 1}, nil},
		{"transcoder", HookPoint{Name: "blocks.2.ln2.hook_normalized", Head: -1}, &HookPoint{Name: "blocks.2.hook_mlp_out", Head: -1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mk := func(onDevice bool) *Pipeline {
				src, err := NewModelSource(m.Model, ModelConfig{Hook: tc.hook, Target: tc.target, Contexts: ctxs, SeqsPerForward: 2, SkipFirst: true})
				if err != nil {
					t.Fatal(err)
				}
				p, err := NewPipeline(src, Config{BatchRows: 8, BufferRows: 40, Seed: 4, OnDevice: onDevice})
				if err != nil {
					t.Fatal(err)
				}
				return p
			}
			host, dev := mk(false), mk(true)
			if host.OnDevice() || !dev.OnDevice() {
				t.Fatalf("OnDevice: host %v, device %v", host.OnDevice(), dev.OnDevice())
			}
			b := m.Model.Backend()
			ctx := context.Background()
			for i := 0; i < 14; i++ {
				if i == 9 {
					// restore the device pipeline from its own state
					st := dev.State()
					dev = mk(true)
					if err := dev.Restore(ctx, st); err != nil {
						t.Fatal(err)
					}
				}
				hb, err := host.Next(ctx)
				if err != nil {
					t.Fatal(err)
				}
				db, err := dev.Next(ctx)
				if err != nil {
					t.Fatal(err)
				}
				if db.X != nil || db.DX == nil {
					t.Fatalf("batch %d: device mode gave host rows", i)
				}
				if got := b.ToHost(db.DX); !slices.Equal(got, hb.X) {
					t.Fatalf("batch %d: device rows differ from the host's", i)
				}
				if tc.target != nil {
					if got := b.ToHost(db.DY); !slices.Equal(got, hb.Y) {
						t.Fatalf("batch %d: device targets differ from the host's", i)
					}
				}
			}
			dev.Close()
		})
	}
}
