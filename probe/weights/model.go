package weights

// Tensors is a read-only set of named tensors. Names and shapes follow the
// Hugging Face layout: a PyTorch nn.Linear weight of a layer mapping
// in -> out is [out, in], row-major.
type Tensors interface {
	// Names lists every tensor, sorted.
	Names() []string
	// Shape gives a tensor's shape, or false when there is no such tensor.
	Shape(name string) ([]int, bool)
	// Float32 dequantizes or converts one tensor into a new float32 slice,
	// row-major in the shape Shape reports. The error names the file and the
	// tensor at fault.
	Float32(name string) ([]float32, error)
}

// Model is what Open found at a path: the tensors, the configuration as a
// Hugging Face config.json document, and where the tokenizer comes from.
type Model struct {
	Path    string // the directory or .gguf file opened
	Format  string // "safetensors" or "gguf"
	Tensors Tensors
	// ConfigJSON is config.json as found in a Hugging Face directory, or for a
	// GGUF file one synthesized from its metadata with the same keys
	// (model_type, architectures, hidden_size, num_hidden_layers,
	// num_attention_heads, num_key_value_heads, intermediate_size,
	// rms_norm_eps, rope_theta, rope_scaling, max_position_embeddings,
	// vocab_size, tie_word_embeddings, bos_token_id, eos_token_id, ...).
	ConfigJSON []byte
	// TokenizerJSON is the path of tokenizer.json in a Hugging Face directory,
	// "" when there is none.
	TokenizerJSON string
	// Vocab is the GGUF file's embedded tokenizer vocabulary, nil for a
	// Hugging Face directory.
	Vocab *Vocab
	// Metadata holds a GGUF file's raw metadata key/value pairs (nil otherwise).
	Metadata map[string]any
	// ContentHash identifies the weights: a hex SHA-256 of the weight files'
	// headers and sizes plus 16 evenly spaced 4 KiB windows of each file's
	// tensor data, which tell apart fine-tunes that share a header (cheap;
	// not of every byte). It depends only on the weight files' contents,
	// not on their paths or on config.json.
	ContentHash string

	close func() error
}

// Close releases the memory maps.
func (m *Model) Close() error {
	if m.close == nil {
		return nil
	}
	return m.close()
}

// Vocab is the tokenizer vocabulary embedded in a GGUF file
// (the tokenizer.ggml.* metadata keys). Slices are indexed by token id.
type Vocab struct {
	Arch         string   // general.architecture: transformers picks the tokenizer's converter by it (gemma3: Unigram)
	Model        string   // tokenizer.ggml.model: "gpt2" (byte-level BPE) or "llama" (SentencePiece)
	Pre          string   // tokenizer.ggml.pre: the pre-tokenizer name, e.g. "smollm", "gpt2", "llama-bpe"
	Tokens       []string // tokenizer.ggml.tokens
	TokenTypes   []int32  // tokenizer.ggml.token_type: 1 normal, 2 unknown, 3 control, 4 user-defined, 5 unused, 6 byte
	Merges       []string // tokenizer.ggml.merges, "a b" pairs in rank order
	Scores       []float32
	BOS, EOS     int // -1 when absent
	UNK, PAD     int // -1 when absent
	AddBOS       bool
	AddEOS       bool
	ChatTemplate string
}
