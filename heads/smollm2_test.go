package heads

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/loupe-dev/loupe/probe"
)

// smolLM2 loads SmolLM2-135M-Instruct (Q4_1 GGUF) from $LOUPE_SMOLLM2_GGUF
// or ~/.cache/loupe, or skips the test.
func smolLM2(t testing.TB) *probe.Loaded {
	t.Helper()
	path := os.Getenv("LOUPE_SMOLLM2_GGUF")
	if path == "" {
		home, _ := os.UserHomeDir()
		path = filepath.Join(home, ".cache", "loupe", "SmolLM2-135M-Instruct.Q4_1.gguf")
	}
	if _, err := os.Stat(path); err != nil {
		t.Skipf("SmolLM2 GGUF not found at %s (set LOUPE_SMOLLM2_GGUF); skipping", path)
	}
	m, err := probe.Load(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

// long skips unless LOUPE_LONG=1: experiments too slow for CI.
func long(t testing.TB) {
	t.Helper()
	if os.Getenv("LOUPE_LONG") != "1" {
		t.Skip("long SmolLM2 experiment; set LOUPE_LONG=1 to run")
	}
}

// TestSmolLM2Heads is the SmolLM2 check that fits CI (about half a minute
// on two cores): the head detector finds induction and previous-token
// heads, the needle-in-a-haystack task is answered, and the top retrieval
// head is one of the top induction heads (retrieval heads copy).
func TestSmolLM2Heads(t *testing.T) {
	m := smolLM2(t)
	ctx := context.Background()
	det, err := Detect(ctx, m.Model, DetectorOptions{RepeatOptions: RepeatOptions{Len: 40, Batch: 2, Seed: 1}})
	if err != nil {
		t.Fatal(err)
	}
	prev, ind := det[0], det[2]
	if len(ind.Labeled()) == 0 || len(prev.Labeled()) == 0 {
		t.Errorf("no induction (%v) or previous-token (%v) heads found", ind.Values.Top(3), prev.Values.Top(3))
	}
	cases, err := NIAHCases(m.Tokenizer, NIAHOptions{Lengths: []int{160}, Depths: []float64{0.5}, Prefix: []int{m.Config.BOS}})
	if err != nil {
		t.Fatal(err)
	}
	sc, res, err := Retrieval(ctx, m.Model, cases, RetrievalOptions{Stop: []int{198, m.Config.EOS},
		Decode: func(ids []int) string { return m.Tokenizer.Decode(ids, true) }})
	if err != nil {
		t.Fatal(err)
	}
	answered := 0
	for _, r := range res {
		if r.Counted {
			answered++
		}
	}
	if answered < 2 {
		t.Fatalf("SmolLM2 answered %d of %d needles", answered, len(cases))
	}
	best := sc.Values.Top(1)[0]
	found := false
	for _, h := range ind.Values.Top(10) {
		found = found || h == best
	}
	if !found {
		t.Errorf("top retrieval head %s is not among the top induction heads %v", best, ind.Values.Top(10))
	}
	t.Logf("induction %v, retrieval %v (%d labelled of %d)", ind.Values.Top(3), sc.Values.Top(3), len(sc.Labeled()), len(sc.Values.Values))
	// The causal check in small: the top 5 retrieval heads against 5
	// random heads, 2 seeds.
	set := &TaskSet{NIAH: cases, NIAHOpts: RetrievalOptions{Stop: []int{198, m.Config.EOS},
		Decode: func(ids []int) string { return m.Tokenizer.Decode(ids, true) }}}
	r, err := Ablate(ctx, m.Model, TaskNIAH, set, sc.Values.Top(5), 2, 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("niah: baseline %.2f, top-5 retrieval heads ablated %.2f, random %v", r.Baseline, r.Ablated, r.Random)
	if r.Ablated > r.Baseline-0.3 || r.RandomMean() < r.Ablated+0.3 {
		t.Errorf("ablating the top retrieval heads: %.2f → %.2f, random heads %v", r.Baseline, r.Ablated, r.Random)
	}
}

// TestSmolLM2CopyDiag checks the effective OV circuit on SmolLM2 with a
// score it must find: copying (each token's top OV logit among the task
// tokens is itself), and prints the successor scores per task.
func TestSmolLM2CopyDiag(t *testing.T) {
	long(t)
	m := smolLM2(t)
	tasks, _, err := SuccessorTasks(m.Tokenizer)
	if err != nil {
		t.Fatal(err)
	}
	var toks []int
	for _, tk := range tasks {
		toks = append(toks, tk.Tokens...)
	}
	ov, err := NewOVCircuit(context.Background(), m.Model, toks)
	if err != nil {
		t.Fatal(err)
	}
	idx := make([]int, len(toks))
	for i := range idx {
		idx[i] = i
	}
	copyMap := NewMap(m.Config.Layers, m.Config.Heads)
	for l := 0; l < m.Config.Layers; l++ {
		for h := 0; h < m.Config.Heads; h++ {
			s, err := ov.Scores(l, h, idx, toks)
			if err != nil {
				t.Fatal(err)
			}
			right := 0
			for i := range s {
				if argmax64(s[i]) == i {
					right++
				}
			}
			copyMap.Set(l, h, float64(right)/float64(len(toks)))
		}
	}
	for _, h := range copyMap.Top(10) {
		t.Logf("copy %s %.3f", h, copyMap.At(h.Layer, h.Head))
	}
	sc, err := Successor(context.Background(), m.Model, tasks)
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range sc.Values.Top(5) {
		line := ""
		for _, tk := range tasks {
			line += " " + tk.Name + "=" + ftoa(sc.Details[tk.Name].At(h.Layer, h.Head))
		}
		t.Logf("succ %s %.3f%s", h, sc.Values.At(h.Layer, h.Head), line)
	}
}

func argmax64(x []float64) int {
	b := 0
	for i, v := range x {
		if v > x[b] {
			b = i
		}
	}
	return b
}

func ftoa(v float64) string { return strconv.FormatFloat(v, 'f', 2, 64) }

func TestSmolLM2NIAHAnswers(t *testing.T) {
	long(t)
	m := smolLM2(t)
	cases, err := NIAHCases(m.Tokenizer, NIAHOptions{Lengths: []int{256}, Depths: []float64{0.5}, Prefix: []int{m.Config.BOS}})
	if err != nil {
		t.Fatal(err)
	}
	dec := func(ids []int) string { return m.Tokenizer.Decode(ids, true) }
	sc, res, err := Retrieval(context.Background(), m.Model, cases, RetrievalOptions{Decode: dec, Stop: []int{198, m.Config.EOS}})
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range res {
		t.Logf("case %d: recall %.2f %q", i, r.Recall, dec(r.Generated))
	}
	t.Logf("%v top %v", sc.Info, sc.Values.Top(5))
	t.Logf("prompt tail: %q", dec(cases[0].Prompt[len(cases[0].Prompt)-40:]))
}

// envList reads a comma-separated list from the environment.
func envList(name, def string) []string {
	v := os.Getenv(name)
	if v == "" {
		v = def
	}
	return strings.Split(v, ",")
}

func smolSuite(t testing.TB, m *probe.Loaded, lengths []int, depths []float64) *Suite {
	t.Helper()
	s, err := DefaultSuite(m.Tokenizer, m.Config.BOS, []int{198, m.Config.EOS},
		SuiteOptions{NIAH: NIAHOptions{Lengths: lengths, Depths: depths}, TemporalPairs: 6, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestSmolLM2Experiment is the SmolLM2 study of heads/RESULTS.md. Steps
// (LOUPE_STEPS, comma-separated): "classify" scores every head with every
// score and writes classify.jsonl and summary.txt; "ablate" ablates the
// top heads of each score on its task against random heads; "ablate-niah"
// does the needle-in-a-haystack ablations. Outputs go to $LOUPE_OUT.
//
//	LOUPE_LONG=1 LOUPE_OUT=/tmp/exp go test -run SmolLM2Experiment -timeout 0 ./heads
func TestSmolLM2Experiment(t *testing.T) {
	long(t)
	m := smolLM2(t)
	out := os.Getenv("LOUPE_OUT")
	if out == "" {
		out = t.TempDir()
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		t.Fatal(err)
	}
	var lengths []int
	for _, s := range envList("LOUPE_NIAH_LENGTHS", "256,512,1024") {
		n, _ := strconv.Atoi(s)
		lengths = append(lengths, n)
	}
	var depths []float64
	for _, s := range envList("LOUPE_NIAH_DEPTHS", "0,0.25,0.5,0.75,1") {
		d, _ := strconv.ParseFloat(s, 64)
		depths = append(depths, d)
	}
	suite := smolSuite(t, m, lengths, depths)
	ctx := context.Background()
	steps := envList("LOUPE_STEPS", "classify,ablate,ablate-niah")
	has := func(s string) bool {
		for _, x := range steps {
			if x == s {
				return true
			}
		}
		return false
	}
	logf := func(f string, a ...any) {
		line := fmt.Sprintf(f, a...)
		t.Log(line)
		fh, err := os.OpenFile(filepath.Join(out, "log.txt"), os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
		if err == nil {
			fmt.Fprintln(fh, line)
			fh.Close()
		}
	}
	jsonl := filepath.Join(out, "classify.jsonl")
	if has("classify") {
		start := time.Now()
		names, err := ParseScores(os.Getenv("LOUPE_SCORES"))
		if err != nil {
			t.Fatal(err)
		}
		scores, err := Classify(ctx, m.Model, suite, names, func(stage string, d, n int) {
			logf("  %s %d/%d %s", stage, d, n, time.Since(start).Round(time.Second))
		})
		if err != nil {
			t.Fatal(err)
		}
		f, err := os.OpenFile(jsonl, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
		if err != nil {
			t.Fatal(err)
		}
		if err := WriteJSONL(f, Records("SmolLM2-135M-Instruct.Q4_1", scores)); err != nil {
			t.Fatal(err)
		}
		f.Close()
		for _, sc := range scores {
			var top []string
			for _, h := range sc.Values.Top(10) {
				top = append(top, fmt.Sprintf("%s=%.3f", h, sc.Values.At(h.Layer, h.Head)))
			}
			logf("%s: labelled %d (%.1f%%) at %.3g; top %s; info %v", sc.Name, len(sc.Labeled()), 100*sc.Fraction(), sc.Threshold, strings.Join(top, " "), sc.Info)
		}
		logf("classify took %s", time.Since(start).Round(time.Second))
	}
	if !has("ablate") && !has("ablate-niah") {
		return
	}
	// Top heads per score from classify.jsonl.
	top := map[string][]Head{}
	f, err := os.ReadFile(jsonl)
	if err != nil {
		t.Fatal(err)
	}
	ranked := map[string]map[int]Head{}
	for _, line := range strings.Split(strings.TrimSpace(string(f)), "\n") {
		var r Record
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatal(err)
		}
		if ranked[r.Score] == nil {
			ranked[r.Score] = map[int]Head{}
		}
		ranked[r.Score][r.Rank] = Head{r.Layer, r.Head}
	}
	for sc, byRank := range ranked {
		for i := 1; i <= len(byRank); i++ {
			top[sc] = append(top[sc], byRank[i])
		}
	}
	seeds, _ := strconv.Atoi(envList("LOUPE_SEEDS", "5")[0])
	set := suite.TaskSet([]int{m.Config.BOS})
	run := func(task, score string, k int) {
		if len(top[score]) < k {
			logf("ablate %s: no %s scores in %s; skipped", task, score, jsonl)
			return
		}
		start := time.Now()
		r, err := Ablate(ctx, m.Model, task, set, top[score][:k], seeds, 1, func(d, n int) {
			logf("  ablate %s top %d: %d/%d runs %s", task, k, d, n, time.Since(start).Round(time.Second))
		})
		if err != nil {
			t.Fatal(err)
		}
		logf("ablate %s, top %d %s heads %v: baseline %.3f, ablated %.3f, random %.3f ± %.3f (%s) [%s]", task, k, score, r.Heads,
			r.Baseline, r.Ablated, r.RandomMean(), r.RandomStd(), floatList(r.Random), time.Since(start).Round(time.Second))
	}
	if has("ablate") {
		run(TaskInduction, ScoreInduction, 5)
		run(TaskSuccessor, ScoreSuccessor, 5)
		run(TaskTemporal, ScoreTemporal, 5)
	}
	if has("ablate-niah") {
		// The ablation set: lengths up to LOUPE_ABLATE_MAXLEN (default
		// 512), depths 0, 0.5, 1.
		maxLen, _ := strconv.Atoi(envList("LOUPE_ABLATE_MAXLEN", "512")[0])
		var sub []NIAHCase
		for _, c := range suite.NIAH {
			if c.Length <= maxLen && (c.Depth == 0 || c.Depth == 0.5 || c.Depth == 1) {
				sub = append(sub, c)
			}
		}
		logf("niah ablation set: %d cases", len(sub))
		set.NIAH = sub
		for _, s := range envList("LOUPE_ABLATE_K", "5,10") {
			k, _ := strconv.Atoi(s)
			run(TaskNIAH, ScoreRetrieval, k)
		}
	}
}

func floatList(xs []float64) string {
	var s []string
	for _, x := range xs {
		s = append(s, strconv.FormatFloat(x, 'f', 3, 64))
	}
	return strings.Join(s, " ")
}

// TestNIAHChatTemplate: NIAH cases wrapped in SmolLM2-Instruct's chat
// template (as its GGUF's tokenizer.chat_template renders one user turn
// with the default system prompt and add_generation_prompt) start with the
// system turn, put the question in the user turn, open the assistant's
// turn right before the answer cue, keep the answer span exact and fit
// the length.
func TestNIAHChatTemplate(t *testing.T) {
	m := smolLM2(t)
	before, after := SmolLM2Chat()
	cases, err := NIAHCases(m.Tokenizer, NIAHOptions{Lengths: []int{300}, Depths: []float64{0, 1}, Before: before, After: after})
	if err != nil {
		t.Fatal(err)
	}
	imStart, imEnd := 1, 2 // <|im_start|>, <|im_end|> in SmolLM2's vocabulary
	assistant, err := m.Tokenizer.Encode("assistant\n", false)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cases {
		nd := DefaultNeedles[c.Needle]
		text := m.Tokenizer.Decode(c.Prompt, false)
		if len(c.Prompt) > c.Length || c.Prompt[0] != imStart || !strings.HasPrefix(text, before) {
			t.Fatalf("prompt of %d tokens (length %d) starts %v %q", len(c.Prompt), c.Length, c.Prompt[:4], text[:min(40, len(text))])
		}
		if !strings.HasSuffix(text, nd.Question+"\nAnswer:"+after+nd.Prefix) {
			t.Fatalf("prompt ends %q", text[max(0, len(text)-120):])
		}
		cue, _ := m.Tokenizer.Encode(nd.Prefix, false)
		at := len(c.Prompt) - len(cue) - len(assistant) - 3 // ... <|im_end|> \n <|im_start|> assistant \n cue
		if c.Prompt[at] != imEnd || c.Prompt[at+2] != imStart {
			t.Fatalf("no end of the user turn and start of the assistant's before the cue: %v", c.Prompt[at:])
		}
		if got := m.Tokenizer.Decode(c.Prompt[c.AnswerStart:c.AnswerEnd], false); got != nd.Answer {
			t.Fatalf("answer span decodes to %q, want %q", got, nd.Answer)
		}
	}
}
