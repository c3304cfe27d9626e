package sae

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/loupe-dev/loupe/organism"
	"github.com/loupe-dev/loupe/organism/corpus"
	"github.com/loupe-dev/loupe/sae/activations"
)

// The BatchTopK/Matryoshka comparison with SAELens (scripts/sae-batchtopk-saelens.sh):
// TestExportOrganismBatches writes the training batches of
// `loupe sae train --hook blocks.2.hook_resid_post --tokens 65536 --batch 1024
// --eval-tokens 4096` on the organism, in training order, with the init
// sample and the held-out rows, as .npy; TestTrainOnExportedBatches trains
// Loupe on them in that order and prints its figures as JSON, for
// scripts/sae_batchtopk_saelens.py to train SAELens's own training SAEs on
// the same batches. Both are skipped unless LOUPE_SAE_COMPARE names a folder.

const compareRows, compareBatch, compareEval = 65536, 1024, 4096

func compareDir(t *testing.T) string {
	dir := os.Getenv("LOUPE_SAE_COMPARE")
	if dir == "" {
		t.Skip("LOUPE_SAE_COMPARE not set (scripts/sae-batchtopk-saelens.sh sets it)")
	}
	return dir
}

func TestExportOrganismBatches(t *testing.T) {
	dir := compareDir(t)
	ctx := context.Background()
	m, err := organism.Load(nil)
	if err != nil {
		t.Fatal(err)
	}
	// the CLI's data for the organism: its corpus (seed 7, 20,000 documents),
	// contexts of 128, 8 a forward pass, the last 5% held out
	g := corpus.New(7)
	docs := make([]string, 20000)
	for i := range docs {
		docs[i] = g.Document()
	}
	d := &Data{Model: m, Docs: docs, ContextSize: 128, Hook: activations.HookPoint{Name: "blocks.2.hook_resid_post", Head: -1}, SeqsPerForward: 8}
	trainDocs, evalDocs := d.split()
	src, _, _, err := d.sourceUnique(trainDocs, compareRows, 0)
	if err != nil {
		t.Fatal(err)
	}
	pipe, err := activations.NewPipeline(src, activations.Config{BatchRows: compareBatch, BufferRows: 16 * compareBatch, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer pipe.Close()
	init, _, n0, err := sample(ctx, src, 4096)
	if err != nil {
		t.Fatal(err)
	}
	w := src.Width()
	var rows []float32
	for i := 0; i < compareRows/compareBatch; i++ {
		b, err := pipe.Next(ctx)
		if err != nil {
			t.Fatal(err)
		}
		rows = append(rows, b.X...)
	}
	esrc, _, _, err := d.source(evalDocs, compareEval)
	if err != nil {
		t.Fatal(err)
	}
	var ev []float32
	for len(ev) < compareEval*w {
		ch, err := esrc.Next(ctx)
		if err != nil {
			t.Fatal(err)
		}
		ev = append(ev, ch.X...)
	}
	for name, a := range map[string][]float32{"init.npy": init[:n0*w], "train.npy": rows, "eval.npy": ev[:compareEval*w]} {
		if err := writeNpy(filepath.Join(dir, name), a, len(a)/w, w); err != nil {
			t.Fatal(err)
		}
	}
}

// TestTrainOnExportedBatches trains LOUPE_SAE_ARCH (default batchtopk) at
// k 16, x8, with the CLI's defaults for this run (lr 1e-3, dead window
// tokens/10, AuxK 1/32, normalised inputs) on the exported batches in order.
func TestTrainOnExportedBatches(t *testing.T) {
	dir := compareDir(t)
	arch := Arch(os.Getenv("LOUPE_SAE_ARCH"))
	if arch == "" {
		arch = BatchTopK
	}
	x, w := readNpy(t, filepath.Join(dir, "train.npy"))
	ev, _ := readNpy(t, filepath.Join(dir, "eval.npy"))
	src, err := activations.NewSliceSource(x, w, nil, 0, compareBatch, false)
	if err != nil {
		t.Fatal(err)
	}
	// a buffer of one batch: batches come in the exported order
	pipe, err := activations.NewPipeline(src, activations.Config{BatchRows: compareBatch, BufferRows: compareBatch, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer pipe.Close()
	n := len(x) / w
	sp := TrainSpec{Arch: arch, DSAE: 8 * w, K: 16, Tokens: int64(n), BatchRows: compareBatch, LR: 1e-3, Seed: 1, Normalize: true,
		Loss: TrainConfig{DeadWindow: int64(n / 10)}}
	s, _, last, err := Train(context.Background(), pipe, sp)
	if err != nil {
		t.Fatal(err)
	}
	ne := len(ev) / w
	acc := NewAccumulator(s)
	acc.Add(ev, ev, ne)
	inf := acc.Metrics()
	fvu, _ := last.Get("fvu")
	dead, _ := last.Get("dead%")
	out := map[string]any{"arch": arch, "train_fvu": fvu, "train_dead": dead / 100,
		"inference": map[string]float64{"l0": inf.L0, "fvu": inf.FVU, "dead": inf.Dead}}
	if s.Threshold != nil {
		out["threshold"] = s.Threshold[0]
		// BatchTopK over the held-out rows themselves, as in training
		pre := make([]float32, ne*s.DSAE)
		s.preActs(ev, ne, make([]float32, ne*w), pre)
		var pos []float32
		for _, v := range pre {
			if v > 0 {
				pos = append(pos, v)
			}
		}
		if len(pos) > s.K*ne {
			tau := kthLargest(pos, s.K*ne+1)
			for i, v := range pre {
				if !(v > tau) {
					pre[i] = 0
				}
			}
		}
		a2 := NewAccumulator(s)
		a2.AddDecoded(pre, ev, s.Decode(pre, ne), ne)
		m2 := a2.Metrics()
		out["batchtopk_on_eval"] = map[string]float64{"l0": m2.L0, "fvu": m2.FVU, "dead": m2.Dead}
	}
	js, _ := json.Marshal(out)
	fmt.Println(string(js))
}

func writeNpy(path string, x []float32, rows, cols int) error {
	hdr := fmt.Sprintf("{'descr': '<f4', 'fortran_order': False, 'shape': (%d, %d), }", rows, cols)
	for (10+len(hdr)+1)%64 != 0 {
		hdr += " "
	}
	hdr += "\n"
	buf := []byte("\x93NUMPY\x01\x00")
	buf = binary.LittleEndian.AppendUint16(buf, uint16(len(hdr)))
	buf = append(buf, hdr...)
	for _, v := range x {
		buf = binary.LittleEndian.AppendUint32(buf, math.Float32bits(v))
	}
	return os.WriteFile(path, buf, 0o644)
}

// readNpy reads a little-endian float32 [rows, cols] .npy written by writeNpy.
func readNpy(t *testing.T, path string) ([]float32, int) {
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) < 10 || string(b[:6]) != "\x93NUMPY" {
		t.Fatalf("%s: not an .npy file", path)
	}
	hl := int(binary.LittleEndian.Uint16(b[8:10]))
	var rows, cols int
	if _, err := fmt.Sscanf(string(b[10:10+hl]), "{'descr': '<f4', 'fortran_order': False, 'shape': (%d, %d), }", &rows, &cols); err != nil {
		t.Fatalf("%s: header %q: %v", path, b[10:10+hl], err)
	}
	body := b[10+hl:]
	if len(body) != 4*rows*cols {
		t.Fatalf("%s: %d bytes of data for [%d, %d]", path, len(body), rows, cols)
	}
	out := make([]float32, rows*cols)
	for i := range out {
		out[i] = math.Float32frombits(binary.LittleEndian.Uint32(body[4*i:]))
	}
	return out, cols
}
