package codebook

import (
	"context"
	"fmt"
	"testing"

	"github.com/loupe-dev/loupe/organism/tokfsm"
	"github.com/loupe-dev/loupe/probe"
)

// BenchmarkTokFSMForward is the TokFSM model's forward over 16 sequences of
// 128 tokens, with its 8 codebooks spliced in and without them (the
// layer's cost is the difference); scripts/bench-tokfsm.sh runs it beside
// PyTorch's forward of the same model (organism/tokfsm/train/bench_forward.py).
func BenchmarkTokFSMForward(b *testing.B) {
	m, err := LoadModel(tokfsmDir, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer m.Close()
	f, err := tokfsm.Load(tokfsmDir + "/fsm.json")
	if err != nil {
		b.Fatal(err)
	}
	ev := NewStateEval(f, 16, m.Config.MaxPos, 3)
	for _, with := range []bool{true, false} {
		b.Run(fmt.Sprintf("codebooks=%v", with), func(b *testing.B) {
			for range b.N {
				opt := probe.Options{Logits: probe.LogitsAll}
				if with {
					sp, err := NewSplice(m.Set)
					if err != nil {
						b.Fatal(err)
					}
					opt.Hooks = &probe.Hooks{Edit: sp.Edits()}
				}
				if _, err := m.Forward(context.Background(), ev.Seqs, opt); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(16*m.Config.MaxPos*b.N)/b.Elapsed().Seconds(), "tokens/s")
		})
	}
}
