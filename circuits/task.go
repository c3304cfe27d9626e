package circuits

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"

	"github.com/loupe-dev/loupe/internal/atomicfile"
	"github.com/loupe-dev/loupe/probe/tokenizer"
)

// A task is what circuit discovery explains: pairs of a clean prompt, on
// which the model does the task, and a corrupted prompt of the same token
// length that keeps the form but removes the information the task needs
// (Wang et al.'s ABC names, Hanna et al.'s year XX01). The answer tokens are
// what the clean prompt should be continued with, the wrong tokens what the
// model would say without the circuit (for IOI the subject's name).
//
// # Task files
//
// A task file is JSON lines, one pair per line:
//
//	{"clean": "When Mary and John went to the store, John gave a drink to",
//	 "corrupt": "When Anna and Paul went to the store, Kate gave a drink to",
//	 "answers": [" Mary"], "wrongs": [" John"], "meta": "ABBA"}
//
// Prompts are text, tokenized with the model's tokenizer (with its special
// prefix, normally BOS); each answer and wrong string must be one token.
// Token ids can be given instead, for models without a tokenizer or to fix
// the tokenization: "clean_ids", "corrupt_ids", "answer_ids", "wrong_ids";
// when both are present the ids are used and the text is only for people.
// "answer"/"wrong" and "answer_id"/"wrong_id" are accepted for a single
// token. The clean and the corrupted prompt must have the same number of
// tokens, so that patching can swap activations position by position.
// Blank lines are skipped. The SAE method reads the clean prompts as its
// positives (the model can do the task) and the corrupted ones as its
// negatives (it cannot).

// Pair is one clean/corrupt prompt pair of a task file.
type Pair struct {
	Clean      string   `json:"clean,omitempty"`
	Corrupt    string   `json:"corrupt,omitempty"`
	Answers    []string `json:"answers,omitempty"`
	Wrongs     []string `json:"wrongs,omitempty"`
	CleanIDs   []int    `json:"clean_ids,omitempty"`
	CorruptIDs []int    `json:"corrupt_ids,omitempty"`
	AnswerIDs  []int    `json:"answer_ids,omitempty"`
	WrongIDs   []int    `json:"wrong_ids,omitempty"`
	Meta       string   `json:"meta,omitempty"`
}

// pairJSON adds the single-token spellings a task file may use.
type pairJSON struct {
	Pair
	Answer   *string `json:"answer,omitempty"`
	Wrong    *string `json:"wrong,omitempty"`
	AnswerID *int    `json:"answer_id,omitempty"`
	WrongID  *int    `json:"wrong_id,omitempty"`
	Template string  `json:"template,omitempty"`
}

// Task is a named list of pairs.
type Task struct {
	Name  string
	Pairs []Pair
}

// ReadTask reads a task file (JSON lines, see the package documentation).
// Errors name the file and the line.
func ReadTask(path string) (*Task, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("task: %w", err)
	}
	name := filepath.Base(path)
	name = name[:len(name)-len(filepath.Ext(name))]
	t := &Task{Name: name}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	for line := 1; sc.Scan(); line++ {
		b := bytes.TrimSpace(sc.Bytes())
		if len(b) == 0 {
			continue
		}
		var pj pairJSON
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&pj); err != nil {
			return nil, fmt.Errorf("task %s line %d: %w", path, line, err)
		}
		p := pj.Pair
		if pj.Answer != nil {
			p.Answers = append(p.Answers, *pj.Answer)
		}
		if pj.Wrong != nil {
			p.Wrongs = append(p.Wrongs, *pj.Wrong)
		}
		if pj.AnswerID != nil {
			p.AnswerIDs = append(p.AnswerIDs, *pj.AnswerID)
		}
		if pj.WrongID != nil {
			p.WrongIDs = append(p.WrongIDs, *pj.WrongID)
		}
		if p.Meta == "" {
			p.Meta = pj.Template
		}
		if err := p.check(); err != nil {
			return nil, fmt.Errorf("task %s line %d: %w", path, line, err)
		}
		t.Pairs = append(t.Pairs, p)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("task %s: %w", path, err)
	}
	if len(t.Pairs) == 0 {
		return nil, fmt.Errorf("task %s: no pairs", path)
	}
	return t, nil
}

// check says what a pair lacks.
func (p *Pair) check() error {
	switch {
	case p.CleanIDs == nil && p.Clean == "":
		return fmt.Errorf("no clean prompt (\"clean\" or \"clean_ids\")")
	case p.CorruptIDs == nil && p.Corrupt == "":
		return fmt.Errorf("no corrupted prompt (\"corrupt\" or \"corrupt_ids\")")
	case p.AnswerIDs == nil && len(p.Answers) == 0:
		return fmt.Errorf("no answer token (\"answers\" or \"answer_ids\")")
	case p.CleanIDs != nil && p.CorruptIDs != nil && len(p.CleanIDs) != len(p.CorruptIDs):
		return fmt.Errorf("clean prompt has %d tokens, corrupted %d: they must be equally long", len(p.CleanIDs), len(p.CorruptIDs))
	}
	return nil
}

// WriteTask writes a task file atomically (temporary file, fsync, rename).
func WriteTask(path string, pairs []Pair) error {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	for i := range pairs {
		if err := enc.Encode(&pairs[i]); err != nil {
			return fmt.Errorf("task %s: pair %d: %w", path, i, err)
		}
	}
	return atomicfile.WriteFile(path, buf.Bytes())
}

// Prompt is a pair in token ids, ready to run.
type Prompt struct {
	Clean, Corrupt []int
	Answers, Wrong []int
}

// Tokenize turns a task's pairs into token ids: ids given in the file are
// kept, text is encoded with tok (with its special prefix). tok may be nil
// when every pair carries ids. vocab bounds the ids.
func Tokenize(t *Task, tok *tokenizer.Tokenizer, vocab int) ([]Prompt, error) {
	out := make([]Prompt, len(t.Pairs))
	for i, p := range t.Pairs {
		where := fmt.Sprintf("task %s pair %d", t.Name, i+1)
		enc := func(what, text string, ids []int) ([]int, error) {
			if ids != nil {
				return slices.Clone(ids), nil
			}
			if tok == nil {
				return nil, fmt.Errorf("%s: %s is text but the model has no tokenizer; give %s_ids", where, what, what)
			}
			return tok.Encode(text, true)
		}
		one := func(what string, texts []string, ids []int) ([]int, error) {
			if ids != nil {
				return slices.Clone(ids), nil
			}
			var out []int
			for _, s := range texts {
				if tok == nil {
					return nil, fmt.Errorf("%s: %s %q is text but the model has no tokenizer", where, what, s)
				}
				got, err := tok.Encode(s, false)
				if err != nil {
					return nil, err
				}
				if len(got) != 1 {
					return nil, fmt.Errorf("%s: %s %q is %d tokens, it must be one", where, what, s, len(got))
				}
				out = append(out, got[0])
			}
			return out, nil
		}
		var q Prompt
		var err error
		if q.Clean, err = enc("clean", p.Clean, p.CleanIDs); err != nil {
			return nil, err
		}
		if q.Corrupt, err = enc("corrupt", p.Corrupt, p.CorruptIDs); err != nil {
			return nil, err
		}
		if q.Answers, err = one("answer", p.Answers, p.AnswerIDs); err != nil {
			return nil, err
		}
		if q.Wrong, err = one("wrong", p.Wrongs, p.WrongIDs); err != nil {
			return nil, err
		}
		if len(q.Clean) != len(q.Corrupt) {
			return nil, fmt.Errorf("%s: clean prompt is %d tokens, corrupted %d: they must be equally long (%q / %q)", where, len(q.Clean), len(q.Corrupt), p.Clean, p.Corrupt)
		}
		if len(q.Clean) == 0 {
			return nil, fmt.Errorf("%s: empty prompt", where)
		}
		for _, ids := range [][]int{q.Clean, q.Corrupt, q.Answers, q.Wrong} {
			for _, id := range ids {
				if id < 0 || id >= vocab {
					return nil, fmt.Errorf("%s: token id %d outside the vocabulary [0, %d)", where, id, vocab)
				}
			}
		}
		out[i] = q
	}
	return out, nil
}
