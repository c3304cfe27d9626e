package weights

import (
	"encoding/binary"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func u64p(v uint64) *uint64 { return &v }

// wantErr fails unless err is non-nil and mentions every fragment.
func wantErr(t *testing.T, what string, err error, fragments ...string) {
	t.Helper()
	if err == nil {
		t.Errorf("%s: no error, want one mentioning %q", what, fragments)
		return
	}
	for _, f := range fragments {
		if !strings.Contains(err.Error(), f) {
			t.Errorf("%s: error %q does not mention %q", what, err, f)
		}
	}
}

func TestSmallGGUF(t *testing.T) {
	m, err := Open(writeTemp(t, "small.gguf", smallGGUF().bytes()))
	if err != nil {
		t.Fatal(err)
	}
	q, err := m.Tensors.Float32("model.layers.0.self_attn.q_proj.weight")
	if err != nil {
		t.Fatal(err)
	}
	// 2 heads of 4 rows: GGUF rows (0,1,2,3) hold HF rows (0,2,1,3).
	for hf, gg := range []int{0, 2, 1, 3, 4, 6, 5, 7} {
		if q[hf*8] != float32(gg*8) {
			t.Errorf("q_proj row %d starts with %v, want GGUF row %d (%v)", hf, q[hf*8], gg, gg*8)
		}
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	_, err = m.Tensors.Float32("model.norm.weight")
	wantErr(t, "Float32 after Close", err, "closed", "model.norm.weight")
	if err := m.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	_, err = m.Tensors.Float32("nonesuch")
	wantErr(t, "unknown tensor", err, "nonesuch")
}

// TestGGUFTruncated cuts a valid file at every length: each prefix must be
// refused with an error naming the file, never a panic.
func TestGGUFTruncated(t *testing.T) {
	full := smallGGUF().bytes()
	dir := t.TempDir()
	for n := 0; n < len(full); n++ {
		p := filepath.Join(dir, "cut.gguf")
		os.WriteFile(p, full[:n], 0o644)
		m, err := Open(p)
		if err == nil {
			m.Close()
			t.Fatalf("prefix of %d/%d bytes opened without error", n, len(full))
		}
		if !strings.Contains(err.Error(), p) {
			t.Fatalf("prefix %d: error %q does not name the file", n, err)
		}
	}
	// The real files too, at a spread of cut points.
	for _, f := range []string{"testdata/tiny_llama.gguf", "testdata/quant.gguf"} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for n := 0; n < len(b); n += 1 + n/16 {
			if m, err := openGGUFBytes(b[:n]); err == nil {
				m.Close()
				t.Fatalf("%s: prefix of %d/%d bytes opened without error", f, n, len(b))
			}
		}
	}
}

func TestGGUFBadHeaders(t *testing.T) {
	good := smallGGUF()
	patch := func(f func(b []byte)) []byte {
		b := good.bytes()
		f(b)
		return b
	}
	with := func(f func(s *ggufSpec)) []byte {
		s := smallGGUF()
		f(&s)
		return s.bytes()
	}
	// Offsets in smallGGUF's bytes: magic 0, version 4, n_tensors 8, n_kv 16,
	// first key length 24.
	cases := []struct {
		name string
		b    []byte
		want []string
	}{
		{"magic", patch(func(b []byte) { copy(b, "GGML") }), []string{"not a GGUF file", "GGML"}},
		{"version 1", patch(func(b []byte) { b[4] = 1 }), []string{"version 1"}},
		{"version 4", patch(func(b []byte) { b[4] = 4 }), []string{"unknown GGUF version 4"}},
		{"big-endian", patch(func(b []byte) { binary.BigEndian.PutUint32(b[4:], 3) }), []string{"big-endian"}},
		{"huge tensor count", patch(func(b []byte) { binary.LittleEndian.PutUint64(b[8:], 1<<62) }), []string{"tensor count"}},
		{"huge kv count", patch(func(b []byte) { binary.LittleEndian.PutUint64(b[16:], 1<<40) }), []string{"metadata count"}},
		{"huge key length", patch(func(b []byte) { binary.LittleEndian.PutUint64(b[24:], 1<<63) }), []string{"claims"}},
		{"huge array", with(func(s *ggufSpec) {
			s.kv = append(s.kv, gkv{"x", ggufArray, garr{ggufUint32, []any{uint32(1)}, 1 << 61}})
		}), []string{`"x"`, "array claims"}},
		{"huge string array", with(func(s *ggufSpec) {
			s.kv = append(s.kv, gkv{"x", ggufArray, garr{ggufString, []any{"a"}, 1 << 40}})
		}), []string{`"x"`, "array claims"}},
		{"huge nested array", with(func(s *ggufSpec) {
			s.kv = append(s.kv, gkv{"x", ggufArray, garr{ggufArray, []any{garr{ggufUint8, []any{uint8(1)}, 1 << 50}}, 0}})
		}), []string{`"x"`, "array element 0", "array claims"}},
		{"deep nesting", with(func(s *ggufSpec) {
			v := garr{ggufUint8, []any{uint8(1)}, 0}
			for i := 0; i < 20; i++ {
				v = garr{ggufArray, []any{v}, 0}
			}
			s.kv = append(s.kv, gkv{"x", ggufArray, v})
		}), []string{`"x"`, "nested deeper"}},
		{"array of unknown type", with(func(s *ggufSpec) {
			s.kv = append(s.kv, gkv{"x", ggufArray, garr{77, nil, 0}})
		}), []string{`"x"`, "unknown value type 77"}},
		{"unknown value type", with(func(s *ggufSpec) { s.kv = append(s.kv, gkv{"x", 13, uint8(0)}) }), []string{`"x"`, "unknown value type 13"}},
		{"duplicate key", with(func(s *ggufSpec) { s.kv = append(s.kv, s.kv[1]) }), []string{"llama.embedding_length", "twice"}},
		{"alignment type", with(func(s *ggufSpec) { s.kv = append(s.kv, gkv{"general.alignment", ggufUint64, uint64(32)}) }), []string{"general.alignment"}},
		{"alignment 0", with(func(s *ggufSpec) { s.kv = append(s.kv, gkv{"general.alignment", ggufUint32, uint32(0)}) }), []string{"general.alignment"}},
		{"alignment 48", with(func(s *ggufSpec) { s.kv = append(s.kv, gkv{"general.alignment", ggufUint32, uint32(48)}) }), []string{"general.alignment"}},
		{"5 dims", with(func(s *ggufSpec) { s.tensors[0].dims = []uint64{1, 1, 1, 1, 24} }), []string{"token_embd.weight", "dimensions"}},
		{"dims overflow", with(func(s *ggufSpec) { s.tensors[0].dims = []uint64{1 << 40, 1 << 40} }), []string{"token_embd.weight", "overflow"}},
		{"dim > int64", with(func(s *ggufSpec) { s.tensors[0].dims = []uint64{1 << 63, 1} }), []string{"token_embd.weight"}},
		{"unknown type", with(func(s *ggufSpec) { s.tensors[0].typ = 99 }), []string{"token_embd.weight", "unknown ggml type 99"}},
		{"private type id", with(func(s *ggufSpec) { s.tensors[0].typ = uint32(typeU8) }), []string{"token_embd.weight", "unknown ggml type"}},
		{"partial block", with(func(s *ggufSpec) { s.tensors[0].typ = uint32(typeQ8_0) }), []string{"token_embd.weight", "blocks"}},
		{"misaligned", with(func(s *ggufSpec) { s.tensors[1].offset = u64p(100) }), []string{"blk.0.attn_q.weight", "alignment"}},
		{"offset past end", with(func(s *ggufSpec) { s.tensors[3].offset = u64p(1 << 20) }), []string{"output_norm.weight", "past the end"}},
		{"huge offset", with(func(s *ggufSpec) { s.tensors[3].offset = u64p(1<<64 - 32) }), []string{"output_norm.weight"}},
		{"overlap", with(func(s *ggufSpec) { s.tensors[2].offset = u64p(96) }), []string{"overlaps"}},
		{"bigger than data", with(func(s *ggufSpec) { s.tensors[3].dims = []uint64{1 << 30} }), []string{"output_norm.weight", "past the end"}},
		{"duplicate tensor", with(func(s *ggufSpec) { s.tensors[3].name = "token_embd.weight" }), []string{"token_embd.weight", "twice"}},
		{"maps onto another", with(func(s *ggufSpec) { s.tensors[3].name = "model.embed_tokens.weight" }), []string{"model.embed_tokens.weight", "twice"}},
		{"no architecture", with(func(s *ggufSpec) { s.kv = s.kv[1:] }), []string{"general.architecture"}},
		{"other architecture", with(func(s *ggufSpec) { s.kv[0].val = "gpt2" }), []string{`GGUF architecture "gpt2" is not supported (supported: llama, qwen2, qwen3, gemma3, phi3)`}},
		{"no block_count", with(func(s *ggufSpec) { s.kv = append(s.kv[:2:2], s.kv[3:]...) }), []string{"llama.block_count", "missing"}},
		{"block_count type", with(func(s *ggufSpec) { s.kv[2] = gkv{"llama.block_count", ggufString, "30"} }), []string{"llama.block_count", "integer"}},
		{"zero heads", with(func(s *ggufSpec) { s.kv[3].val = uint32(0) }), []string{"head_count", "not positive"}},
		{"heads vs kv", with(func(s *ggufSpec) { s.kv[4].val = uint32(3) }), []string{"key/value heads"}},
		{"q rows vs heads", with(func(s *ggufSpec) { s.kv[3].val, s.kv[4].val = uint32(8), uint32(8) }), []string{"blk.0.attn_q.weight", "heads"}},
		{"tokens type", with(func(s *ggufSpec) {
			s.kv[8].val = garr{ggufInt32, []any{int32(1)}, 0}
		}), []string{"tokenizer.ggml.tokens"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m, err := openGGUFBytes(c.b)
			if err == nil {
				m.Close()
			}
			wantErr(t, c.name, err, append([]string{"mem.gguf"}, c.want...)...)
		})
	}
}

func TestGGUFVersion2(t *testing.T) {
	s := smallGGUF()
	s.version = 2
	m, err := openGGUFBytes(s.bytes())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.Tensors.Float32("model.layers.0.self_attn.k_proj.weight"); err != nil {
		t.Error(err)
	}
}

func TestGGUFConfigOptions(t *testing.T) {
	s := smallGGUF()
	s.kv = append(s.kv,
		gkv{"llama.attention.key_length", ggufUint32, uint32(8)},
		gkv{"llama.rope.scaling.type", ggufString, "yarn"},
		gkv{"llama.rope.scaling.factor", ggufFloat32, float32(4)},
		gkv{"llama.rope.freq_base", ggufFloat64, 1e6},
		gkv{"tokenizer.ggml.bos_token_id", ggufInt32, int32(1)},
		gkv{"tokenizer.ggml.add_eos_token", ggufBool, true},
	)
	// key_length 8 means 2 heads of 8 rows: q has 8 rows = 1 head... so use
	// a q of 16 rows.
	s.tensors[1].dims = []uint64{8, 16}
	s.tensors[1].data = f32bytes(make([]float32, 128)...)
	s.tensors[2].dims = []uint64{8, 8}
	s.tensors[2].data = f32bytes(make([]float32, 64)...)
	m, err := openGGUFBytes(s.bytes())
	if err != nil {
		t.Fatal(err)
	}
	var cfg map[string]any
	json.Unmarshal(m.ConfigJSON, &cfg)
	if cfg["head_dim"] != 8.0 || cfg["rope_theta"] != 1e6 || cfg["bos_token_id"] != 1.0 || cfg["eos_token_id"] != nil ||
		cfg["tie_word_embeddings"] != true || cfg["vocab_size"] != 3.0 || cfg["max_position_embeddings"] != nil {
		t.Errorf("config = %s", m.ConfigJSON)
	}
	rs, _ := cfg["rope_scaling"].(map[string]any)
	if rs["rope_type"] != "yarn" || rs["factor"] != 4.0 {
		t.Errorf("rope_scaling = %v", rs)
	}
	if m.Vocab.BOS != 1 || m.Vocab.EOS != -1 || !m.Vocab.AddEOS || m.Vocab.AddBOS {
		t.Errorf("Vocab ids = %+v", m.Vocab)
	}
	// Without head_count_kv, rope base or a vocabulary.
	s = smallGGUF()
	s.kv = append(s.kv[:5:5], s.kv[6:7]...)
	s.kv[4] = gkv{"llama.feed_forward_length", ggufUint32, uint32(16)}
	s.tensors[2].dims = []uint64{8, 8}
	s.tensors[2].data = f32bytes(make([]float32, 64)...)
	m, err = openGGUFBytes(s.bytes())
	if err != nil {
		t.Fatal(err)
	}
	json.Unmarshal(m.ConfigJSON, &cfg)
	if cfg["num_key_value_heads"] != 2.0 || cfg["rope_theta"] != 10000.0 || cfg["vocab_size"] != 3.0 || m.Vocab != nil {
		t.Errorf("config = %s, vocab %v", m.ConfigJSON, m.Vocab)
	}
}

// ---- safetensors ----

// stFile builds a safetensors file from a header object and data.
func stFile(header map[string]any, data []byte) []byte {
	js, _ := json.Marshal(header)
	b := make([]byte, 8, 8+len(js)+len(data))
	binary.LittleEndian.PutUint64(b, uint64(len(js)))
	b = append(b, js...)
	return append(b, data...)
}

func stEnt(dtype string, shape []int64, begin, end int64) map[string]any {
	return map[string]any{"dtype": dtype, "shape": shape, "data_offsets": []int64{begin, end}}
}

func openST(t *testing.T, b []byte) (*Model, error) {
	t.Helper()
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "config.json"), []byte(`{"model_type":"llama"}`), 0o644)
	os.WriteFile(filepath.Join(dir, "model.safetensors"), b, 0o644)
	return Open(dir)
}

func TestSafetensorsTruncated(t *testing.T) {
	full, err := os.ReadFile("testdata/hf_single/model.safetensors")
	if err != nil {
		t.Fatal(err)
	}
	for n := 0; n < len(full); n++ {
		m, err := openST(t, full[:n])
		if err == nil {
			m.Close()
			t.Fatalf("prefix of %d/%d bytes opened without error", n, len(full))
		}
		if !strings.Contains(err.Error(), "model.safetensors") {
			t.Fatalf("prefix %d: error %q does not name the file", n, err)
		}
	}
}

func TestSafetensorsBadHeaders(t *testing.T) {
	data := make([]byte, 64)
	ok := map[string]any{"a": stEnt("F32", []int64{2, 4}, 0, 32), "b": stEnt("F16", []int64{16}, 32, 64)}
	mod := func(f func(h map[string]any)) []byte {
		h := map[string]any{}
		for k, v := range ok {
			h[k] = v
		}
		f(h)
		return stFile(h, data)
	}
	withJSON := func(js string) []byte {
		b := make([]byte, 8)
		binary.LittleEndian.PutUint64(b, uint64(len(js)))
		return append(append(b, js...), data...)
	}
	huge := make([]byte, 16)
	binary.LittleEndian.PutUint64(huge, 1<<63)
	over := stFile(ok, data)
	binary.LittleEndian.PutUint64(over, uint64(len(over)))
	cases := []struct {
		name string
		b    []byte
		want []string
	}{
		{"good", stFile(ok, data), nil},
		{"huge header length", huge, []string{"header length"}},
		{"header past end", over, []string{"truncated"}},
		{"not json", withJSON("{nope"), []string{"header JSON"}},
		{"json array", withJSON("[1,2]"), []string{"JSON object"}},
		{"trailing junk", withJSON(`{"__metadata__":{}}x`), []string{"stray"}},
		{"padded", withJSON(`{"__metadata__":{"k":"v"}}    `), nil},
		{"bad metadata", mod(func(h map[string]any) { h["__metadata__"] = map[string]any{"k": 1} }), []string{"__metadata__"}},
		{"unknown dtype", mod(func(h map[string]any) { h["a"] = stEnt("F4", []int64{2, 4}, 0, 32) }), []string{`"a"`, "F4"}},
		{"negative dim", mod(func(h map[string]any) { h["a"] = stEnt("F32", []int64{-2, -4}, 0, 32) }), []string{`"a"`, "shape"}},
		{"no shape", mod(func(h map[string]any) { h["a"] = map[string]any{"dtype": "F32", "data_offsets": []int{0, 32}} }), []string{`"a"`, "shape"}},
		{"shape overflow", mod(func(h map[string]any) { h["a"] = stEnt("F32", []int64{1 << 40, 1 << 40}, 0, 32) }), []string{`"a"`, "shape"}},
		{"size mismatch", mod(func(h map[string]any) { h["a"] = stEnt("F32", []int64{2, 3}, 0, 32) }), []string{`"a"`, "needs 24 bytes"}},
		{"offsets reversed", mod(func(h map[string]any) { h["a"] = stEnt("F32", []int64{2, 4}, 32, 0) }), []string{`"a"`, "data_offsets"}},
		{"offsets past end", mod(func(h map[string]any) { h["b"] = stEnt("F16", []int64{16}, 48, 80) }), []string{`"b"`, "past the end"}},
		{"huge offsets", mod(func(h map[string]any) { h["b"] = stEnt("F16", []int64{16}, 1<<62, 1<<62+32) }), []string{`"b"`}},
		{"three offsets", mod(func(h map[string]any) {
			h["b"] = map[string]any{"dtype": "F16", "shape": []int{16}, "data_offsets": []int{32, 64, 96}}
		}), []string{`"b"`, "data_offsets"}},
		{"overlap", mod(func(h map[string]any) { h["b"] = stEnt("F16", []int64{16}, 16, 48) }), []string{"overlaps"}},
		{"entry not object", mod(func(h map[string]any) { h["a"] = 5 }), []string{`"a"`}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m, err := openST(t, c.b)
			if c.want == nil {
				if err != nil {
					t.Fatalf("valid file refused: %v", err)
				}
				for _, n := range m.Tensors.Names() {
					if _, err := m.Tensors.Float32(n); err != nil {
						t.Error(err)
					}
				}
				m.Close()
				return
			}
			if err == nil {
				m.Close()
			}
			wantErr(t, c.name, err, append([]string{"model.safetensors"}, c.want...)...)
		})
	}
}

func TestSafetensorsUnconvertible(t *testing.T) {
	m, err := openST(t, stFile(map[string]any{"ids": stEnt("I64", []int64{2}, 0, 16), "m": stEnt("BOOL", []int64{3}, 16, 19)}, make([]byte, 19)))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if s, ok := m.Tensors.Shape("m"); !ok || !sameShape(s, []int{3}) {
		t.Errorf("Shape(m) = %v %v", s, ok)
	}
	_, err = m.Tensors.Float32("ids")
	wantErr(t, "I64", err, "model.safetensors", `"ids"`, "I64")
	_, err = m.Tensors.Float32("m")
	wantErr(t, "BOOL", err, `"m"`, "BOOL")
}

func TestHFDirErrors(t *testing.T) {
	st := stFile(map[string]any{"a": stEnt("F32", []int64{2}, 0, 8)}, make([]byte, 8))
	mk := func(files map[string]string) string {
		dir := t.TempDir()
		for n, c := range files {
			os.WriteFile(filepath.Join(dir, n), []byte(c), 0o644)
		}
		return dir
	}
	idx := func(wm map[string]string) string {
		b, _ := json.Marshal(map[string]any{"weight_map": wm})
		return string(b)
	}
	cfg := `{"model_type":"llama"}`
	cases := []struct {
		name  string
		files map[string]string
		want  []string
	}{
		{"empty dir", map[string]string{}, []string{"no model.safetensors"}},
		{"no config", map[string]string{"model.safetensors": string(st)}, []string{"config.json"}},
		{"bad config", map[string]string{"config.json": "{", "model.safetensors": string(st)}, []string{"config.json", "JSON"}},
		{"index bad json", map[string]string{"config.json": cfg, "model.safetensors.index.json": "{"}, []string{"index"}},
		{"index empty", map[string]string{"config.json": cfg, "model.safetensors.index.json": `{"weight_map":{}}`}, []string{"weight_map"}},
		{"shard missing", map[string]string{"config.json": cfg, "model.safetensors.index.json": idx(map[string]string{"a": "s1.safetensors"})}, []string{"s1.safetensors"}},
		{"shard escapes", map[string]string{"config.json": cfg, "model.safetensors.index.json": idx(map[string]string{"a": "../s1.safetensors"})}, []string{`"a"`, "../s1.safetensors"}},
		{"tensor not in shard", map[string]string{"config.json": cfg, "s1.safetensors": string(st),
			"model.safetensors.index.json": idx(map[string]string{"a": "s1.safetensors", "b": "s1.safetensors"})}, []string{`"b"`, "not found"}},
		{"tensor in two shards", map[string]string{"config.json": cfg, "s1.safetensors": string(st), "s2.safetensors": string(st),
			"model.safetensors.index.json": idx(map[string]string{"a": "s1.safetensors", "x": "s2.safetensors"})}, []string{`"a"`, "twice"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m, err := Open(mk(c.files))
			if err == nil {
				m.Close()
			}
			wantErr(t, c.name, err, c.want...)
		})
	}
	// A lone .safetensors file opens without a config.
	p := writeTemp(t, "w.safetensors", st)
	m, err := Open(p)
	if err != nil {
		t.Fatal(err)
	}
	if m.Path != p || m.ConfigJSON != nil {
		t.Errorf("Path %q ConfigJSON %s", m.Path, m.ConfigJSON)
	}
	m.Close()
	_, err = Open(writeTemp(t, "x.bin", st))
	wantErr(t, "x.bin", err, "x.bin", "not a directory")
	_, err = Open(filepath.Join(t.TempDir(), "missing.gguf"))
	wantErr(t, "missing", err, "missing.gguf")
	_, err = Open(writeTemp(t, "empty.gguf", nil))
	wantErr(t, "empty", err, "empty.gguf", "not a GGUF file")
}

// TestContentHash: stable across opens, different for different weights
// even when headers agree.
func TestContentHash(t *testing.T) {
	a := smallGGUF()
	b := smallGGUF()
	b.tensors[3].data = []byte{0, 0x3c, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}
	h := func(s ggufSpec) string {
		m, err := openGGUFBytes(s.bytes())
		if err != nil {
			t.Fatal(err)
		}
		return m.ContentHash
	}
	if h(a) != h(a) || h(a) == h(b) || len(h(a)) != 64 {
		t.Errorf("hashes %s %s %s", h(a), h(a), h(b))
	}
}
