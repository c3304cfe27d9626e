package circuits

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/loupe-dev/loupe/probe"
)

// TestDumpSAEFeatures writes the SAE method's features (every head's
// hook_result pooled over positions, positives then negatives) of the toy
// IOI task (200 pairs) and the organism's induction task (250 pairs) to
// LOUPE_SAE_DUMP, for testdata/sae_diag.py: NAME.f32 (little-endian
// float32 [2n, heads, d_model]) and NAME.json (n, layers, heads, d).
func TestDumpSAEFeatures(t *testing.T) {
	dir := os.Getenv("LOUPE_SAE_DUMP")
	if dir == "" {
		t.Skip("LOUPE_SAE_DUMP=DIR writes the SAE features for testdata/sae_diag.py")
	}
	ctx := context.Background()
	m, p := toyIOI(t, 200)
	om, op := organismInduction(t, 250)
	for _, c := range []struct {
		name    string
		m       *probe.Model
		prompts []Prompt
	}{{"toyioi", m, p}, {"organism", om, op}} {
		for _, pool := range []string{"mean", "last"} {
			var all [][]int
			for _, q := range c.prompts {
				all = append(all, q.Clean)
			}
			for _, q := range c.prompts {
				all = append(all, q.Corrupt)
			}
			f, err := HeadFeatures(ctx, c.m, all, 32, pool)
			if err != nil {
				t.Fatal(err)
			}
			raw := make([]byte, 4*len(f))
			if _, err := binary.Encode(raw, binary.LittleEndian, f); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, c.name+pool+".f32"), raw, 0o644); err != nil {
				t.Fatal(err)
			}
			meta, _ := json.Marshal(map[string]int{"n": len(c.prompts), "layers": c.m.Config.Layers, "heads": c.m.Config.Heads, "d": c.m.Config.DModel})
			if err := os.WriteFile(filepath.Join(dir, c.name+pool+".json"), meta, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
}
