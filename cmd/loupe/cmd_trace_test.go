package main

import (
	"context"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/loupe-dev/loupe/organism"
	"github.com/loupe-dev/loupe/probe"
	"github.com/loupe-dev/loupe/store"
)

// TestTraceRoundTrip traces two prompts of the model organism and checks
// what the files hold against a direct forward pass.
func TestTraceRoundTrip(t *testing.T) {
	dir, err := organism.Dir()
	if err != nil {
		t.Fatal(err)
	}
	tmp := t.TempDir()
	prompts := filepath.Join(tmp, "prompts.jsonl")
	os.WriteFile(prompts, []byte(`{"id": 7, "text": "The day after Monday is"}`+"\n"+`{"id": 3, "text": "In 2004 the mayor of Avalon was"}`+"\n"), 0o644)
	out := filepath.Join(tmp, "sub", "tr.arrow")
	code, stdout, stderr := runCLI(t, "trace", "--model", dir, "--prompts", prompts, "--out", out, "--quiet",
		"--hooks", "blocks.*.hook_resid_post,blocks.1.attn.hook_z", "--logit-lens", "3")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if !strings.Contains(stdout, "traced 2 prompts") {
		t.Fatalf("stdout %q", stdout)
	}
	m, err := probe.Load(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	ids, _ := m.Tokenizer.Encode("In 2004 the mayor of Avalon was", true)
	want, err := m.Forward(context.Background(), [][]int{ids}, probe.Options{Hooks: &probe.Hooks{Cache: []string{"blocks.2.hook_resid_post", "blocks.1.attn.hook_z", "blocks.0.attn.hook_pattern"}}})
	if err != nil {
		t.Fatal(err)
	}

	tr, err := store.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	ctx := context.Background()
	if got := tr.Prompts(); !slices.Equal(got, []int{3, 7}) && !slices.Equal(got, []int{7, 3}) {
		t.Errorf("prompts %v", got)
	}
	toks, err := tr.ReadTokens(ctx, store.Selector{Prompts: []int{3}})
	if err != nil || len(toks) != 1 || !slices.Equal(toks[0].IDs, ids) {
		t.Fatalf("tokens of prompt 3: %v %v, want ids %v", toks, err, ids)
	}
	for _, hook := range []string{"blocks.2.hook_resid_post", "blocks.1.attn.hook_z"} {
		acts, err := tr.ReadActivations(ctx, store.Selector{Prompts: []int{3}, Hooks: []string{hook}})
		if err != nil || len(acts) != 1 {
			t.Fatalf("%s: %d activations, %v", hook, len(acts), err)
		}
		if !slices.Equal(acts[0].Values, want.Cache[hook].Data) || !slices.Equal(acts[0].Shape, want.Cache[hook].Shape[2:]) {
			t.Errorf("%s: stored values or shape %v differ from the forward pass", hook, acts[0].Shape)
		}
	}
	att, err := tr.ReadAttention(ctx, store.Selector{Prompts: []int{3}, Layers: []int{0}})
	if err != nil || len(att) != m.Config.Heads {
		t.Fatalf("attention: %d heads, %v", len(att), err)
	}
	T := len(ids)
	pat := want.Cache["blocks.0.attn.hook_pattern"].Data
	for _, a := range att {
		if !slices.Equal(a.Weights, pat[a.Head*T*T:(a.Head+1)*T*T]) {
			t.Errorf("attention of head 0.%d differs from hook_pattern", a.Head)
		}
	}
	lens, err := tr.ReadLogitLens(ctx, store.Selector{Prompts: []int{3}, Layers: []int{m.Config.Layers - 1}})
	if err != nil || len(lens) != 1 {
		t.Fatalf("logit lens: %d, %v", len(lens), err)
	}
	// The last layer's lens is the model's own prediction.
	V := m.Config.Vocab
	for p := 0; p < T; p++ {
		row := want.Logits[p*V : (p+1)*V]
		if top := slices.Index(row, slices.Max(row)); int(lens[0].TopIDs[p*3]) != top {
			t.Errorf("position %d: lens top-1 %d, logits argmax %d", p, lens[0].TopIDs[p*3], top)
		}
	}
	if !math.IsNaN(float64(lens[0].TargetProb[T-1])) {
		t.Errorf("last position's target probability is %g, want null", lens[0].TargetProb[T-1])
	}
}

func TestTraceBadInput(t *testing.T) {
	tmp := t.TempDir()
	empty := filepath.Join(tmp, "empty.txt")
	os.WriteFile(empty, []byte("\n\n"), 0o644)
	one := filepath.Join(tmp, "one.txt")
	os.WriteFile(one, []byte("one prompt\n"), 0o644)
	bad := filepath.Join(tmp, "bad.jsonl")
	os.WriteFile(bad, []byte(`{"id": 1, "text": "a"}`+"\n"+`{"id": 1, "text": "b"}`+"\n"), 0o644)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"trace", "--model", "", "--prompts", one}, "--model is empty"},
		{[]string{"trace", "--model", "m", "--prompts", empty}, "no prompts"},
		{[]string{"trace", "--model", "m", "--prompts", bad}, "prompt id 1 repeats"},
		{[]string{"trace", "--model", "m", "--prompts", filepath.Join(tmp, "nope")}, "no such file"},
		{[]string{"trace", "--model", "m", "--prompts", bad, "--attention", "most"}, "--attention"},
		{[]string{"trace", "--prompts", one, "--hooks", "["}, `--hooks "[": syntax error`},
		{[]string{"trace", "--prompts", one, "--hooks", "blocks.*.hook_resid_post,blocks.*.hook_resid_pots", "--out", filepath.Join(tmp, "t.arrow")}, `--hooks "blocks.*.hook_resid_pots" matches no hook point`},
	} {
		code, _, stderr := runCLI(t, tc.args...)
		if code != 2 || !strings.Contains(stderr, tc.want) {
			t.Errorf("%v: exit %d, %q; want 2 and %q", tc.args, code, stderr, tc.want)
		}
	}
}
