package codebook

import (
	"context"
	"encoding/json"
	"math"
	"os"
	"slices"
	"testing"

	"github.com/loupe-dev/loupe/probe"
)

// A train_text.py story model (not committed: 37 MB) against PyTorch
// (organism/tokfsm/train/story_reference.py): the tokenizer's ids, the
// logits at every position to 1e-4 and every position's chosen codes (as a
// set: near-equal similarities may rank either way), without and with
// codes forced in the last slots of one head at every position. Set
// LOUPE_STORY_MODEL to the model folder and LOUPE_STORY_REF to the
// reference file.
func TestStoryModelMatchesPyTorch(t *testing.T) {
	dir, refPath := os.Getenv("LOUPE_STORY_MODEL"), os.Getenv("LOUPE_STORY_REF")
	if dir == "" || refPath == "" {
		t.Skip("set LOUPE_STORY_MODEL and LOUPE_STORY_REF (organism/tokfsm/train/story_reference.py)")
	}
	raw, err := os.ReadFile(refPath)
	if err != nil {
		t.Fatal(err)
	}
	var ref struct {
		Texts []string `json:"texts"`
		Seqs  [][]int  `json:"seqs"`
		Force struct {
			Hook  string  `json:"hook"`
			Group int     `json:"group"`
			Codes []int32 `json:"codes"`
		} `json:"force"`
		Runs [][]struct {
			Logits [][]float64          `json:"logits"`
			IDs    map[string][][][]int `json:"ids"` // [T][G][k]
		} `json:"runs"`
	}
	if err := json.Unmarshal(raw, &ref); err != nil {
		t.Fatal(err)
	}
	m, err := LoadModel(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if m.Tokenizer == nil {
		t.Fatal("the model folder's tokenizer.json was not loaded")
	}
	bos, _ := m.Tokenizer.SpecialID("<|endoftext|>")
	for i, text := range ref.Texts {
		ids, err := m.Tokenizer.Encode(text, false)
		if err != nil {
			t.Fatal(err)
		}
		ids = append([]int{bos}, ids...)[:len(ref.Seqs[i])]
		if !slices.Equal(ids, ref.Seqs[i]) {
			t.Fatalf("story %d: Loupe's token ids differ from the tokenizers library's", i)
		}
	}
	ivs := []Intervention{{Hook: ref.Force.Hook, Group: ref.Force.Group, Force: ref.Force.Codes, AtEnd: true}}
	for r, run := range ref.Runs {
		worst, flipped, total := 0.0, 0, 0
		for i, seq := range ref.Seqs {
			var use []Intervention
			if r == 1 {
				use = ivs
			}
			sp, err := NewSplice(m.Set, use...)
			if err != nil {
				t.Fatal(err)
			}
			var cache []string
			for _, l := range m.Set.Layers {
				cache = append(cache, IDsHook(l.Hook))
			}
			res, err := m.Forward(context.Background(), [][]int{seq}, probe.Options{Logits: probe.LogitsAll,
				Hooks: &probe.Hooks{Edit: sp.Edits(), Cache: cache}})
			if err != nil {
				t.Fatal(err)
			}
			for p := range seq {
				for v, want := range run[i].Logits[p] {
					worst = max(worst, math.Abs(float64(res.LogitsAt(0, p)[v])-want))
				}
			}
			for _, l := range m.Set.Layers {
				got := res.Cache[IDsHook(l.Hook)].Data
				for p := range seq {
					for g := range l.Groups {
						// the k chosen codes as a set: two near-equal
						// similarities may rank either way in float32
						want := slices.Clone(run[i].IDs[l.Hook][p][g])
						have := make([]int, l.K)
						for k := range l.K {
							have[k] = int(got[(p*l.Groups+g)*l.K+k])
						}
						slices.Sort(want)
						slices.Sort(have)
						for k := range l.K {
							total++
							if have[k] != want[k] {
								flipped++
							}
						}
					}
				}
			}
		}
		t.Logf("run %d (forced: %v): max |logit diff| %.2g, chosen code ids differing (as sets) %d of %d", r, r == 1, worst, flipped, total)
		if worst > 1e-4 || flipped > 0 {
			t.Errorf("run %d: max |logit diff| %.3g (want <= 1e-4), %d of %d code ids differ", r, worst, flipped, total)
		}
	}
}
