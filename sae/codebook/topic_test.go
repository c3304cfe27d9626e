package codebook

import (
	"encoding/json"
	"math"
	"os"
	"regexp"
	"slices"
	"testing"
)

// topicRef is testdata/topic_ref.json (make_topic_refs.py): a synthetic
// code-search cache and what the reference's functions give on it.
type topicRef struct {
	TokensStr [][]string             `json:"tokens_str"`
	Acts      map[string][][][][]int `json:"acts"` // [G][ex][T][k]
	Books     map[string][2]int      `json:"books"`
	K         int                    `json:"k"`
	Cases     []struct {
		Pattern   string        `json:"pattern"`
		TopK      int           `json:"topk"`
		MinPrec   float64       `json:"min_precision"`
		Positions [][2]int      `json:"positions"`
		Codes     []PatternCode `json:"codes"`
	} `json:"cases"`
	Patch struct {
		IDs     [][][]int32 `json:"ids"` // [B][T][k]
		Codes   []int32     `json:"codes"`
		Patched [][][]int32 `json:"patched"`
	} `json:"patch"`
	TopicTexts [][]string `json:"topic_texts"`
	Fractions  []struct {
		Pattern   string    `json:"pattern"`
		PerPrompt []float64 `json:"per_prompt"`
		Mean      float64   `json:"mean"`
	} `json:"fractions"`
}

func loadTopicRef(t *testing.T) (*topicRef, *CodeActs, *Set) {
	t.Helper()
	raw, err := os.ReadFile("testdata/topic_ref.json")
	if err != nil {
		t.Fatal(err)
	}
	var ref topicRef
	if err := json.Unmarshal(raw, &ref); err != nil {
		t.Fatal(err)
	}
	set := &Set{}
	a := &CodeActs{IDs: map[string][][]int32{}, Counts: map[string][]int{}}
	for _, hook := range []string{"blocks.0.attn.hook_z", "blocks.0.hook_mlp_out"} {
		b := ref.Books[hook]
		l := &Layer{Hook: hook, Groups: b[0], NumCodes: b[1], K: ref.K}
		set.Layers = append(set.Layers, l)
		a.Counts[hook] = make([]int, l.Groups*l.NumCodes)
		for e := range ref.TokensStr {
			T := len(ref.TokensStr[e])
			ids := make([]int32, T*l.Groups*l.K)
			for p := range T {
				for g := range l.Groups {
					for k, id := range ref.Acts[hook][g][e][p] {
						ids[(p*l.Groups+g)*l.K+k] = int32(id)
						a.Counts[hook][g*l.NumCodes+id]++
					}
				}
			}
			a.IDs[hook] = append(a.IDs[hook], ids)
		}
	}
	for _, toks := range ref.TokensStr {
		text, ends := "", []int{}
		for _, s := range toks {
			text += s
			ends = append(ends, len(text))
		}
		a.Text = append(a.Text, text)
		a.Ends = append(a.Ends, ends)
		a.Seqs = append(a.Seqs, make([]int, len(toks)))
	}
	return &ref, a, set
}

// The pattern search against the reference's functions transcribed
// (search_re, byte_id_to_token_pos_id, get_code_precision_and_recall,
// get_codes_from_pattern): the matched positions, and the codes kept with
// their precision, recall and firing counts, in order.
func TestPatternCodesMatchReference(t *testing.T) {
	ref, a, set := loadTopicRef(t)
	for _, c := range ref.Cases {
		re := regexp.MustCompile(c.Pattern)
		pos := a.Matches(re)
		if len(pos) != len(c.Positions) {
			t.Fatalf("%s: %d matched positions, the reference %d", c.Pattern, len(pos), len(c.Positions))
		}
		for i, p := range pos {
			if p.Seq != c.Positions[i][0] || p.Pos != c.Positions[i][1] {
				t.Fatalf("%s: position %d is %v, the reference's %v", c.Pattern, i, p, c.Positions[i])
			}
		}
		got, n := a.PatternCodes(set, re, c.TopK, c.MinPrec)
		if n != len(c.Positions) || len(got) != len(c.Codes) {
			t.Fatalf("%s (top %d, precision > %g): %d codes, the reference %d", c.Pattern, c.TopK, c.MinPrec, len(got), len(c.Codes))
		}
		for i, g := range got {
			w := c.Codes[i]
			if g.Hook != w.Hook || g.Group != w.Group || g.Code != w.Code || g.Acts != w.Acts ||
				math.Abs(g.Precision-w.Precision) > 1e-12 || math.Abs(g.Recall-w.Recall) > 1e-12 {
				t.Errorf("%s: code %d is %+v, the reference's %+v", c.Pattern, i, g, w)
			}
		}
		t.Logf("%s: %d positions, %d codes", c.Pattern, n, len(got))
	}
	// the planted code: at every " dragon" token group 0 chooses code 6
	codes, _ := a.PatternCodes(set, regexp.MustCompile("dragon"), 1, 0)
	if len(codes) == 0 || codes[0].Group != 0 || codes[0].Code != 6 {
		t.Errorf("the most precise code on \"dragon\" is %v, want the planted code 6 of group 0", codes)
	}
}

// The story scope: every position from a sequence's first match on.
func TestAfterSpansStories(t *testing.T) {
	_, a, _ := loadTopicRef(t)
	re := regexp.MustCompile("dragon")
	first := map[int]int{}
	for _, p := range a.Matches(re) {
		if _, ok := first[p.Seq]; !ok {
			first[p.Seq] = p.Pos
		}
	}
	want := 0
	for s, p := range first {
		want += len(a.Seqs[s]) - p
	}
	got := a.After(re)
	if len(got) != want {
		t.Fatalf("%d positions after the first matches, want %d", len(got), want)
	}
	for _, p := range got {
		if f, ok := first[p.Seq]; !ok || p.Pos < f {
			t.Fatalf("position %v is before its story's first match (%d)", p, f)
		}
	}
}

// Forced codes at the last slots, as the reference's patch_in_codes with
// parse_topic_codes_string's code_pos -1, -2 (the first code in the last
// slot), and ActivateCodes grouping codes by codebook group.
func TestForceAtEndMatchesPatchInCodes(t *testing.T) {
	ref, _, set := loadTopicRef(t)
	for b := range ref.Patch.IDs {
		for p := range ref.Patch.IDs[b] {
			slot := slices.Clone(ref.Patch.IDs[b][p])
			forceSlots(slot, ref.Patch.Codes, true)
			if !slices.Equal(slot, ref.Patch.Patched[b][p]) {
				t.Fatalf("row %d position %d: %v, the reference %v", b, p, slot, ref.Patch.Patched[b][p])
			}
		}
	}
	first := []int32{1, 2, 3}
	forceSlots(first, []int32{9}, false)
	if !slices.Equal(first, []int32{9, 2, 3}) {
		t.Errorf("forcing the first slot gave %v", first)
	}
	codes := []PatternCode{{Hook: "blocks.0.attn.hook_z", Group: 1, Code: 6}, {Hook: "blocks.0.hook_mlp_out", Code: 2},
		{Hook: "blocks.0.attn.hook_z", Group: 1, Code: 4}, {Hook: "blocks.0.attn.hook_z", Group: 1, Code: 5},
		{Hook: "blocks.0.attn.hook_z", Group: 1, Code: 0}} // four codes for k = 3: the fourth is left out
	ivs, err := ActivateCodes(set, codes)
	if err != nil {
		t.Fatal(err)
	}
	if len(ivs) != 2 || ivs[0].Group != 1 || !slices.Equal(ivs[0].Force, []int32{6, 4, 5}) || !ivs[0].AtEnd ||
		ivs[1].Hook != "blocks.0.hook_mlp_out" || !slices.Equal(ivs[1].Force, []int32{2}) || ivs[0].Positions != nil {
		t.Errorf("ActivateCodes gave %+v", ivs)
	}
	if _, err := ActivateCodes(set, []PatternCode{{Hook: "blocks.3.hook_mlp_out"}}); err == nil {
		t.Error("a code of a site without a codebook: no error")
	}
}

// The tutorial's count: lower-cased regex search, per prompt, averaged.
func TestTopicFractionMatchesTutorial(t *testing.T) {
	ref, _, _ := loadTopicRef(t)
	for _, f := range ref.Fractions {
		per, mean := TopicFraction(ref.TopicTexts, regexp.MustCompile(f.Pattern))
		if !slices.Equal(per, f.PerPrompt) || math.Abs(mean-f.Mean) > 1e-12 {
			t.Errorf("%s: %v (mean %g), the tutorial's count %v (mean %g)", f.Pattern, per, mean, f.PerPrompt, f.Mean)
		}
	}
}
