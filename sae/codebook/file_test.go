package codebook

import (
	"context"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/loupe-dev/loupe/probe"
	"github.com/loupe-dev/loupe/probe/compute"
)

func testSet(t *testing.T) *Set {
	l := loadRefs(t)[1].layer()
	l.Hook = "blocks.0.attn.hook_z"
	return &Set{Layers: []*Layer{l}, Meta: map[string]any{"model": "test"}}
}

func TestSaveLoadRoundTrip(t *testing.T) {
	dir := t.TempDir()
	s := testSet(t)
	if err := s.Save(dir); err != nil {
		t.Fatal(err)
	}
	got, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got.Layers, s.Layers) {
		t.Fatalf("loaded layers differ from the saved ones")
	}
}

func TestBadCodebookFiles(t *testing.T) {
	dir := t.TempDir()
	if err := testSet(t).Save(dir); err != nil {
		t.Fatal(err)
	}
	st := filepath.Join(dir, "codebooks.safetensors")
	data, _ := os.ReadFile(st)
	for _, cut := range []int{7, 100, len(data) / 2, len(data) - 1} {
		bad := t.TempDir()
		js, _ := os.ReadFile(filepath.Join(dir, "codebooks.json"))
		os.WriteFile(filepath.Join(bad, "codebooks.json"), js, 0o644)
		os.WriteFile(filepath.Join(bad, "codebooks.safetensors"), data[:cut], 0o644)
		_, err := Load(bad)
		if err == nil || !strings.Contains(err.Error(), "codebooks.safetensors") {
			t.Errorf("truncated at %d of %d bytes: error %v does not name the file", cut, len(data), err)
		}
	}
	// A codebook whose width differs from the hook's.
	s := testSet(t) // 4 groups of 8 = 32 features at hook_z
	cfg := probe.Config{Layers: 2, DModel: 64, Heads: 4, HeadDim: 16}
	if err := s.CheckModel(cfg); err == nil || !strings.Contains(err.Error(), "32 features") {
		t.Errorf("width mismatch: %v", err)
	}
	cfg.HeadDim = 8
	if err := s.CheckModel(cfg); err != nil {
		t.Errorf("a matching codebook was refused: %v", err)
	}
	s.Layers[0].Hook = "blocks.2.attn.hook_z"
	if err := s.CheckModel(cfg); err == nil {
		t.Errorf("a codebook past the last layer was accepted")
	}
	// Nothing half-written: a set that fails its check writes no file.
	s = testSet(t)
	s.Layers[0].Codes = s.Layers[0].Codes[:10]
	empty := t.TempDir()
	if err := s.Save(empty); err == nil {
		t.Fatal("a set with a short code table was saved")
	}
	if ents, _ := os.ReadDir(empty); len(ents) != 0 {
		t.Fatalf("a failed save left %d files", len(ents))
	}
}

// Code ids out of range: in an intervention, and from a hook on the ids.
func TestCodeIDOutOfRange(t *testing.T) {
	m, ref := loadTokFSM(t)
	l := m.Set.Layers[1]
	if _, err := NewSplice(m.Set, Intervention{Hook: l.Hook, Force: []int32{int32(l.NumCodes)}}); err == nil {
		t.Fatal("forcing code id = num_codes was accepted")
	}
	if _, err := NewSplice(m.Set, Intervention{Hook: l.Hook, Disable: []int32{-3}}); err == nil {
		t.Fatal("disabling code -3 was accepted")
	}
	if _, err := NewSplice(m.Set, Intervention{Hook: "blocks.0.hook_resid_post", Force: []int32{1}}); err == nil {
		t.Fatal("an intervention where no codebook sits was accepted")
	}
	sp, _ := NewSplice(m.Set)
	bad := probe.Edit{Hook: IDsHook(l.Hook), Fn: func(b compute.Backend, _ string, x compute.Tensor, _ []int) (compute.Tensor, error) {
		host := b.ToHost(x)
		host[0] = float32(l.NumCodes + 5)
		return b.FromHost(host, x.Shape()...), nil
	}}
	_, err := m.Forward(context.Background(), ref.Tokens, probe.Options{Hooks: &probe.Hooks{Edit: append(sp.Edits(), bad)}})
	if err == nil || !strings.Contains(err.Error(), "outside [0, ") {
		t.Fatalf("an id hook returning an id out of range: %v", err)
	}
}
