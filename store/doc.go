// Package store keeps what Loupe measures in Apache Arrow IPC files, the
// contract between Loupe and everything outside it: the TUI, batch scripts
// and Python notebooks. docs/schema.md is the reference for the layout;
// this comment is the tour.
//
// # A trace is a family of files
//
// An Arrow IPC file holds one schema, and a trace holds several tables
// (tokens, activations, attention, head scores, ...), so a trace is one
// main file plus sibling files that share its stem:
//
//	traces.arrow                   the main table (tokens, unless chosen otherwise)
//	traces.activations.576.arrow   activations whose rows have trailing shape [576]
//	traces.activations.9x64.arrow  ... and [9, 64]
//	traces.attention.arrow         full attention rows (short prompts)
//	traces.attention_topk.arrow    top-k attended keys (long prompts)
//	traces.head_scores.arrow       one row per (layer, head, score)
//	traces.flow.arrow              attention rollout and flow matrices
//	traces.logit_lens.arrow        top-k predictions per layer and position
//	traces.index.arrow             one row per record batch of every table
//
// Each file is an ordinary Arrow IPC file: pyarrow.ipc.open_file on any of
// them gives a table that pandas understands. Every file's schema metadata
// carries the schema version (loupe.schema), its table kind and name, the
// run information as JSON (model path and content hash, architecture and
// config, Loupe version, command line, creation time), and a random trace
// id shared by all files of one write, which lets a reader notice files
// from different writes. The main file is small by design (tokens), so
// read_all() on it is always safe; the big tables live in siblings that a
// reader opens on demand.
//
// # Writing
//
// Create starts a trace; WriteTokens, WriteActivation, WriteAttention,
// WriteAttentionTopK, WriteHeadScores, WriteFlow and WriteLogitLens take
// plain Go values (slices and ints, see types.go) so that producers need
// no Arrow; Commit publishes the trace. Rows are streamed: each table keeps
// one pending record batch, bounded by Options.MaxBatchBytes and
// MaxBatchRows, and a batch is flushed to disk when it is full or when its
// key (prompt, hook, layer, head) changes. Memory stays flat whatever the
// trace size, so traces larger than RAM work.
//
//	w, err := store.Create("traces.arrow", run, store.Options{Compression: store.Zstd})
//	if err != nil { ... }
//	defer w.Close() // removes the temporary files unless committed
//	w.WriteTokens(store.Tokens{PromptID: 0, IDs: ids, Texts: texts})
//	w.WriteActivation(store.Activation{Hook: "blocks.3.hook_resid_post", Layer: 3, Head: -1,
//		PromptID: 0, Shape: []int{576}, Values: resid})
//	err = w.Commit(ctx)
//
// Output is atomic. Every file is written to a hidden temporary file in
// the destination folder (".traces.arrow.tmp-<id>"); Commit writes the
// footers, fsyncs each file, and renames them under an exclusive lock on
// the folder, siblings first and the main file last, then fsyncs the
// folder. An interrupted run leaves only temporary files, which lack the
// Arrow footer and never look complete; two writers of the same path
// leave the complete output of one of them. A writer holds a lock on its
// temporary files while it lives, so the next writer in the folder removes
// a dead (killed) writer's and never a live one's (temps.go: FindTemps,
// CleanTemps).
//
// # Reading
//
// Open memory-maps the main file and reads the small index; that alone
// says what the trace holds (Tables, Prompts, Hooks, Layers, Run) without
// touching its data. Batches iterates over the record batches of one table
// that the index says hold the selected prompts, hooks, layers or heads:
// ipc.FileReader reaches a batch directly through the file footer, so one
// prompt or hook is read without scanning the rest. The typed readers
// (ReadTokens, ReadActivations, ReadAttention, ...) turn batches back into
// the writer's Go types.
//
//	tr, err := store.Open("traces.arrow")
//	if err != nil { ... }
//	defer tr.Close()
//	acts, err := tr.ReadActivations(ctx, store.Selector{Prompts: []int{2}, Hooks: []string{"blocks.3.hook_resid_post"}})
//
// Readers never trust a file: a truncated, damaged or foreign file gives
// an error naming the file (wrapping ErrIncomplete or ErrNotLoupe), never a
// panic or an unbounded allocation. The flatbuffer metadata is checked
// before arrow-go parses it, every batch is validated before use, and the
// reader is fuzzed (FuzzOpen).
//
// Export converts a trace to Parquet or CSV, one output file per table.
package store
