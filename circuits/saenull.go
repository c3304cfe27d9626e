package circuits

import (
	"fmt"

	"github.com/loupe-dev/loupe/probe"
)

// NullNegatives builds the SAE method's null control: prompts' positives
// with negatives that are other clean prompts of the same task (others'
// clean prompts, cycled), which the model completes as well as the
// positives. Nothing but the particular prompts drawn tells the two sides
// apart, so a method that ranks heads by how differently they behave on
// positives and negatives has nothing to rank by, and whatever ranking it
// still gives comes from something other than the task. On the models of
// circuits/RESULTS.md the SAE method's ranking with its real negatives is
// no better than this control's (its node score follows how many distinct
// codes a head has); report the two side by side.
//
// others must hold at least one prompt.
func NullNegatives(prompts, others []Prompt) ([]Prompt, error) {
	if len(others) == 0 {
		return nil, fmt.Errorf("circuits: the SAE null control needs other clean prompts of the task for its negatives; got none")
	}
	out := make([]Prompt, len(prompts))
	for i, q := range prompts {
		q.Corrupt = others[i%len(others)].Clean
		out[i] = q
	}
	return out, nil
}

// CodeDiversity is each head's number of distinct codes over every example
// of an SAE run (codes is [examples, heads], heads in the order of hs):
// what the SAE method's node score follows when positives and negatives do
// not differ, since a head with more codes in use has more of them fall on
// the positive side alone by chance. As a ranking it is the baseline the
// method's node scores should beat.
func CodeDiversity(codes []int, hs []Node) map[Node]float64 {
	H := len(hs)
	out := map[Node]float64{}
	for h, n := range hs {
		seen := map[int]bool{}
		for e := 0; e < len(codes)/H; e++ {
			seen[codes[e*H+h]] = true
		}
		out[n] = float64(len(seen))
	}
	return out
}

// Heads lists the model's heads in layer order (the nodes the SAE method
// scores, and that node ROC AUCs rank).
func Heads(c probe.Config) []Node { return heads(Components(c)) }
