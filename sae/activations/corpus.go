package activations

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/loupe-dev/loupe/probe/tokenizer"
)

// ReadCorpus reads documents from a text corpus: a JSON-lines file
// (.jsonl, .json: one object per line with a "text" field) or plain text
// (documents separated by blank lines). An empty corpus is an error.
func ReadCorpus(path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("corpus %s: %w", path, err)
	}
	defer f.Close()
	var docs []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	ext := strings.ToLower(filepath.Ext(path))
	jsonl := ext == ".jsonl" || ext == ".json"
	var para strings.Builder
	line := 0
	for sc.Scan() {
		line++
		s := sc.Text()
		if jsonl {
			if strings.TrimSpace(s) == "" {
				continue
			}
			var rec struct {
				Text *string `json:"text"`
			}
			if err := json.Unmarshal([]byte(s), &rec); err != nil {
				return nil, fmt.Errorf("corpus %s line %d: %w", path, line, err)
			}
			if rec.Text == nil {
				return nil, fmt.Errorf("corpus %s line %d: no \"text\" field", path, line)
			}
			if *rec.Text != "" {
				docs = append(docs, *rec.Text)
			}
			continue
		}
		if strings.TrimSpace(s) == "" {
			if para.Len() > 0 {
				docs = append(docs, para.String())
				para.Reset()
			}
			continue
		}
		if para.Len() > 0 {
			para.WriteByte('\n')
		}
		para.WriteString(s)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("corpus %s: %w", path, err)
	}
	if para.Len() > 0 {
		docs = append(docs, para.String())
	}
	if len(docs) == 0 {
		return nil, fmt.Errorf("corpus %s: no documents (the file is empty)", path)
	}
	return docs, nil
}

// Contexts tokenizes docs into n contexts of exactly size tokens, as
// SAELens does: the documents' tokens are concatenated with sep between
// documents, cut into pieces, and each context starts with bos when
// prependBOS (bos < 0: none). The documents are reused from the start when
// they run out; Epochs says how many passes over them were needed.
func Contexts(tok *tokenizer.Tokenizer, docs []string, size, n int, prependBOS bool) (ctxs [][]int32, epochs int, err error) {
	bos := tok.BOS()
	if prependBOS && bos < 0 {
		return nil, 0, fmt.Errorf("activations: the tokenizer has no BOS token to prepend")
	}
	body := size
	if prependBOS {
		body--
	}
	if body <= 0 {
		return nil, 0, fmt.Errorf("activations: context size %d leaves no room for text", size)
	}
	sep := bos
	if sep < 0 {
		sep = tok.EOS()
	}
	var stream []int32
	cur := make([]int32, 0, size)
	total := 0
	// Each document is tokenized once; later epochs (a long run over a
	// small corpus) reuse its ids.
	cache := make([][]int, len(docs))
	for len(ctxs) < n {
		epochs++
		for di, d := range docs {
			ids := cache[di]
			if ids == nil {
				var err error
				if ids, err = tok.Encode(d, false); err != nil {
					return nil, 0, fmt.Errorf("activations: tokenize: %w", err)
				}
				if ids == nil {
					ids = []int{}
				}
				cache[di] = ids
			}
			total += len(ids)
			if len(stream) > 0 && sep >= 0 {
				stream = append(stream, int32(sep))
			}
			for _, id := range ids {
				stream = append(stream, int32(id))
			}
			for len(stream) >= body && len(ctxs) < n {
				cur = cur[:0]
				if prependBOS {
					cur = append(cur, int32(bos))
				}
				cur = append(cur, stream[:body]...)
				ctxs = append(ctxs, append([]int32(nil), cur...))
				stream = stream[body:]
			}
			if len(ctxs) >= n {
				break
			}
		}
		if total == 0 {
			return nil, 0, fmt.Errorf("activations: the corpus has no tokens")
		}
	}
	return ctxs, epochs, nil
}
