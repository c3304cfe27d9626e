package circuits

import (
	"encoding/xml"
	"io"
	"strings"
	"testing"

	"github.com/loupe-dev/loupe/probe"
)

func TestPictures(t *testing.T) {
	cfg := probe.Config{Layers: 3, Heads: 4}
	pic := &Picture{Title: "a <test> & circuit", Config: cfg,
		Nodes:      []Node{HeadNode(0, 1), HeadNode(2, 3), MLPNode(1)},
		Edges:      []Edge{{EmbedNode(), HeadNode(0, 1)}, {HeadNode(0, 1), MLPNode(1)}, {MLPNode(1), HeadNode(2, 3)}, {HeadNode(2, 3), LogitsNode()}},
		Scores:     map[Node]float64{HeadNode(0, 1): 0.5},
		EdgeScores: map[Edge]float64{{HeadNode(0, 1), MLPNode(1)}: 0.25}}
	dot := pic.DOT()
	for _, want := range []string{`"0.1" -> "mlp1"`, `"2.3" -> "logits"`, `"embed" -> "0.1"`, "penwidth=1.75", "rankdir=BT"} {
		if !strings.Contains(dot, want) {
			t.Errorf("DOT lacks %q:\n%s", want, dot)
		}
	}
	svg := pic.SVG()
	dec := xml.NewDecoder(strings.NewReader(svg))
	texts := map[string]bool{}
	paths := 0
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("the SVG is not well-formed XML: %v", err)
		}
		switch v := tok.(type) {
		case xml.CharData:
			texts[strings.TrimSpace(string(v))] = true
		case xml.StartElement:
			if v.Name.Local == "path" {
				paths++
			}
		}
	}
	for _, n := range []string{"embed", "0.1", "mlp1", "2.3", "logits", "a <test> & circuit", "0.5"} {
		if !texts[n] {
			t.Errorf("the SVG does not show %q", n)
		}
	}
	if paths != len(pic.Edges) {
		t.Errorf("%d edge paths, want %d", paths, len(pic.Edges))
	}
}
