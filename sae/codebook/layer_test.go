package codebook

import (
	"encoding/json"
	"math"
	"os"
	"slices"
	"testing"

	"github.com/loupe-dev/loupe/probe/compute"
)

type refCase struct {
	Name                                string
	Rows, Groups, Dim, NumCodes, K      int
	LayerNorm                           bool
	Reduce                              Reduce
	Disable                             []int32
	X, Codes, LNWeight, LNBias, WantOut []float32
	Forced, WantIDs                     []int32
}

func loadRefs(t *testing.T) []refCase {
	t.Helper()
	data, err := os.ReadFile("testdata/layer_ref.json")
	if err != nil {
		t.Fatal(err)
	}
	var f struct {
		Cases []struct {
			refCase
			NumCodes int       `json:"num_codes"`
			LNWeight []float32 `json:"ln_weight"`
			LNBias   []float32 `json:"ln_bias"`
			WantOut  []float32 `json:"want_out"`
			WantIDs  []int32   `json:"want_ids"`
		}
	}
	if err := json.Unmarshal(data, &f); err != nil {
		t.Fatal(err)
	}
	var out []refCase
	for _, c := range f.Cases {
		r := c.refCase
		r.NumCodes, r.LNWeight, r.LNBias, r.WantOut, r.WantIDs = c.NumCodes, c.LNWeight, c.LNBias, c.WantOut, c.WantIDs
		out = append(out, r)
	}
	return out
}

func (c refCase) layer() *Layer {
	return &Layer{Hook: "blocks.0.hook_mlp_out", Groups: c.Groups, Dim: c.Dim, NumCodes: c.NumCodes, K: c.K,
		Reduce: c.Reduce, LayerNorm: c.LayerNorm, LNEps: 1e-5, LNWeight: c.LNWeight, LNBias: c.LNBias, Codes: c.Codes}
}

// The layer against an independent PyTorch transcription of the reference
// forward (testdata/make_refs.py): the same ids, outputs to 1e-5.
func TestLayerMatchesReference(t *testing.T) {
	b := compute.NewCPU()
	for _, c := range loadRefs(t) {
		t.Run(c.Name, func(t *testing.T) {
			l := c.layer()
			if err := l.Check(); err != nil {
				t.Fatal(err)
			}
			var disabled func(int, int) []int32
			if len(c.Disable) > 0 {
				disabled = func(int, int) []int32 { return c.Disable }
			}
			s, err := l.Apply(b, b.FromHost(c.X, c.Rows, l.Width()), disabled)
			if err != nil {
				t.Fatal(err)
			}
			ids, out := s.IDs, s.Out
			if c.Forced != nil {
				if ids, out = c.Forced, nil; true {
					if out, err = l.Decode(ids, c.Rows); err != nil {
						t.Fatal(err)
					}
				}
			}
			if !slices.Equal(ids, c.WantIDs) {
				t.Fatalf("ids\n got %v\nwant %v", ids, c.WantIDs)
			}
			if d := maxAbs(out, c.WantOut); d > 1e-5 {
				t.Fatalf("output differs from the reference by %g (tolerance 1e-5)", d)
			}
			// The splice's path: the output gathered on the backend.
			dev, err := l.DecodeOn(b, ids, c.Rows, nil)
			if err != nil {
				t.Fatal(err)
			}
			if d := maxAbs(b.ToHost(dev), c.WantOut); d > 1e-5 || !slices.Equal(dev.Shape(), []int{c.Rows, l.Width()}) {
				t.Fatalf("DecodeOn: shape %v, output differs from the reference by %g (tolerance 1e-5)", dev.Shape(), d)
			}
			for _, id := range ids {
				if slices.Contains(c.Disable, id) {
					t.Fatalf("disabled code %d chosen", id)
				}
			}
		})
	}
}

func maxAbs(a, b []float32) float64 {
	if len(a) != len(b) {
		return math.Inf(1)
	}
	d := 0.0
	for i := range a {
		d = max(d, math.Abs(float64(a[i])-float64(b[i])))
		if math.IsNaN(d) {
			return math.Inf(1)
		}
	}
	return d
}

func TestLayerBadInput(t *testing.T) {
	b := compute.NewCPU()
	c := loadRefs(t)[1]
	l := c.layer()
	if _, err := l.Apply(b, b.FromHost(c.X[:c.Rows*(l.Width()-4)], c.Rows, l.Width()-4), nil); err == nil {
		t.Fatal("an activation narrower than the codebook was accepted")
	}
	ids := make([]int32, c.Rows*l.Groups*l.K)
	ids[3] = int32(l.NumCodes)
	if _, err := l.Decode(ids, c.Rows); err == nil {
		t.Fatal("a code id out of range was decoded")
	}
	if _, err := l.DecodeOn(b, ids, c.Rows, nil); err == nil {
		t.Fatal("a code id out of range was decoded on the backend")
	}
	ids[3] = -2
	if _, err := l.Decode(ids, c.Rows); err == nil {
		t.Fatal("code id -2 was decoded")
	}
	if _, err := l.DecodeOn(b, ids, c.Rows, nil); err == nil {
		t.Fatal("code id -2 was decoded on the backend")
	}
	bad := *l
	bad.Codes = bad.Codes[:len(bad.Codes)-1]
	if bad.Check() == nil {
		t.Fatal("a codebook with a short code table passed Check")
	}
}
