package probe

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/loupe-dev/loupe/probe/compute"
)

// laterCPU is the CPU backend with compute.HostCopier, as the GPU has it:
// ToHostLater takes the values at once but hands them over only when
// waited for, and logs both, so a test sees when a pass waits. fail names
// a tensor shape whose copy fails (the GPU's pinned memory or driver
// failing), for the error path.
type laterCPU struct {
	*compute.CPU
	log  *[]string
	fail func(shape []int) bool
}

func (c laterCPU) ToHostLater(t compute.Tensor) func() ([]float32, error) {
	data := c.CPU.ToHost(t)
	*c.log = append(*c.log, "queue")
	failed := c.fail != nil && c.fail(t.Shape())
	return func() ([]float32, error) {
		*c.log = append(*c.log, "wait")
		if failed {
			return nil, errors.New("pinned host memory ran out")
		}
		return data, nil
	}
}

// A backend that copies to the host asynchronously gets every cache copy
// queued during the pass and waited for at its end (one wait phase, none
// before the last copy is queued); the activations equal the plain CPU's,
// for one pass, a chunked prefill and KV-cache generation.
func TestCacheCopiesWaitAtPassEnd(t *testing.T) {
	c := testConfigs()["llama"]
	var log []string
	later, err := New(c, randomTensors(c, 1), laterCPU{CPU: compute.NewCPU(), log: &log})
	if err != nil {
		t.Fatal(err)
	}
	plain, err := New(c, randomTensors(c, 1), compute.NewCPU())
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	batch := [][]int{prompt, prompt[:6]}
	hooks := &Hooks{Cache: []string{"*"}}
	same := func(what string, got, want map[string]*Activation) {
		t.Helper()
		if len(got) != len(want) || len(want) == 0 {
			t.Fatalf("%s: %d cached activations, want %d", what, len(got), len(want))
		}
		for name, a := range want {
			g := got[name]
			if g == nil || maxDiff(g.Data, a.Data) != 0 || len(g.Data) != len(a.Data) {
				t.Errorf("%s: %s differs from the synchronous copy", what, name)
			}
		}
	}
	oneWaitPhase := func(what string, passes int) {
		t.Helper()
		phases, queued, waited := 0, 0, 0
		for i, e := range log {
			if e == "wait" {
				waited++
				if i == 0 || log[i-1] == "queue" {
					phases++
				}
			} else {
				queued++
			}
		}
		if queued == 0 || queued != waited || phases != passes {
			t.Errorf("%s: %d copies queued, %d waited for, in %d wait phases; want every copy waited for in %d", what, queued, waited, phases, passes)
		}
		log = log[:0]
	}

	got, err := later.Forward(ctx, batch, Options{Hooks: hooks, Logits: LogitsAll})
	if err != nil {
		t.Fatal(err)
	}
	want := forward(t, plain, batch, hooks)
	same("one pass", got.Cache, want.Cache)
	oneWaitPhase("one pass", 1)

	long := [][]int{append(append([]int(nil), prompt...), prompt...)}
	// (Scores and patterns cannot be cached in pieces.)
	chunked := &Hooks{Cache: []string{"hook_embed", "blocks.*.hook_resid_*", "blocks.*.attn.hook_z", "ln_final.hook_normalized"}}
	got, err = later.Forward(ctx, long, Options{Hooks: chunked, Chunk: 8})
	if err != nil {
		t.Fatal(err)
	}
	want, err = plain.Forward(ctx, long, Options{Hooks: chunked, Chunk: 8})
	if err != nil {
		t.Fatal(err)
	}
	same("chunked prefill", got.Cache, want.Cache)
	oneWaitPhase("chunked prefill", 3) // 22 tokens in pieces of 8

	steps := func(m *Model) []map[string]*Activation {
		var out []map[string]*Activation
		_, err := m.Generate(ctx, prompt, GenerateOptions{MaxTokens: 3, Hooks: &Hooks{Cache: []string{"blocks.*.hook_resid_post"}},
			OnCache: func(_ int, c map[string]*Activation) { out = append(out, c) }})
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	g, w := steps(later), steps(plain)
	if len(g) != 3 || len(w) != 3 {
		t.Fatalf("generation: %d and %d steps cached, want 3", len(g), len(w))
	}
	for i := range w {
		same("generation", g[i], w[i])
	}
	oneWaitPhase("generation", 3)
}

// A copy that fails on its way to the host fails the pass: an error naming
// the activation and no Result (nothing half-filled), and the next pass
// runs as before.
func TestCacheCopyFailureFailsThePass(t *testing.T) {
	c := testConfigs()["llama"]
	var log []string
	failing := true
	b := laterCPU{CPU: compute.NewCPU(), log: &log, fail: func(shape []int) bool { return failing && len(shape) == 2 && shape[1] == c.DMLP }}
	m, err := New(c, randomTensors(c, 1), b)
	if err != nil {
		t.Fatal(err)
	}
	hooks := &Hooks{Cache: []string{"blocks.*.hook_resid_post", "blocks.1.mlp.hook_post"}}
	r, err := m.Forward(context.Background(), [][]int{prompt}, Options{Hooks: hooks})
	if err == nil || r != nil || !strings.Contains(err.Error(), "caching blocks.1.mlp.hook_post") || !strings.Contains(err.Error(), "pinned host memory ran out") {
		t.Fatalf("a failed cache copy gave result %v, error %v; want no result and an error naming blocks.1.mlp.hook_post", r, err)
	}
	failing = false
	got := forward(t, m, [][]int{prompt}, hooks)
	plain, err := New(c, randomTensors(c, 1), compute.NewCPU())
	if err != nil {
		t.Fatal(err)
	}
	want := forward(t, plain, [][]int{prompt}, hooks)
	if maxDiff(got.Logits, want.Logits) != 0 || maxDiff(got.Cache["blocks.1.mlp.hook_post"].Data, want.Cache["blocks.1.mlp.hook_post"].Data) != 0 {
		t.Errorf("the pass after a failed copy differs from the plain CPU's")
	}
}

// On the test backend (the GPU with LOUPE_TEST_DEVICE=cuda, whose caches
// are asynchronous pinned copies), every cached activation equals, to the
// bit, a synchronous ToHost of the same tensor at the same hook point (an
// edit that reads it and changes nothing): the queued copy holds the
// values of its moment even though the pass goes on changing tensors.
func TestCacheEqualsSynchronousCopy(t *testing.T) {
	for _, fam := range []string{"llama", "gpt2", "neox", "gemma3"} {
		m := newTestModel(fam)
		sync := map[string][]float32{}
		read := Edit{Hook: "*", Fn: func(b compute.Backend, name string, x compute.Tensor, _ []int) (compute.Tensor, error) {
			sync[name] = b.ToHost(x)
			return x, nil
		}}
		batch := [][]int{prompt, prompt[:7]}
		r := forward(t, m, batch, &Hooks{Cache: []string{"*"}, Edit: []Edit{read}})
		for _, name := range m.HookNames() {
			if r.Cache[name] == nil {
				t.Errorf("%s: %s not cached", fam, name)
			}
		}
		for name, a := range r.Cache {
			want, ok := sync[name]
			if !ok || len(want) != len(a.Data) || maxDiff(a.Data, want) != 0 {
				t.Errorf("%s: cached %s differs from a synchronous copy of the same tensor", fam, name)
			}
		}
	}
}
