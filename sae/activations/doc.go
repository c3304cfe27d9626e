// Package activations is the one activation pipeline that SAEs, codebooks
// and SAE circuits train on (DESIGN decision 11):
//
//	Source (a model's forward pass over a corpus at chosen hook points,
//	        or rows already in memory)
//	  -> Pipeline (a shuffling buffer)
//	  -> Batch (rows of float32 on the host, ready for a training step)
//
// A Source yields its rows in a fixed order, chunk by chunk, and can seek
// back to any chunk it has given: that is what lets a long training job
// resume bit-identically without saving the buffer itself. The Pipeline
// fills its buffer in generations: it reads whole chunks until it holds
// BufferRows rows, shuffles them with its seeded generator, serves them as
// batches, and only then reads the next generation. Its State (where the
// current generation started, the generator's state then, how many batches
// it has served since) is a few bytes; Restore seeks the source back,
// rebuilds the same generation and skips what was served.
//
// Rows from different generations never mix; a buffer of a few hundred
// contexts already mixes tokens from hundreds of documents, which is what
// shuffling is for (consecutive tokens of one document are correlated).
package activations
