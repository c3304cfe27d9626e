package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"

	"github.com/loupe-dev/loupe/internal/atomicfile"
	"github.com/loupe-dev/loupe/sae/activations"
	"github.com/loupe-dev/loupe/sae/codebook"
)

// The reference tutorial's figures (tutorials/code_intervention.ipynb on
// taufeeque/TinyStories-1Layer-21M-Codebook): the percentage of its 40
// samples that mention the topic, unsteered and with the topic's codes.
var paperTopicSteering = map[string][2]float64{
	"dragon": {2.5, 65.0}, "slide": {2.5, 95.0}, "friend": {42.5, 75.0}, "flower": {0.0, 90.0},
	"fire": {2.5, 100.0}, "prince|crown|king|castle": {40.0, 87.5}, "baby": {0.0, 90.0},
}

// cmdCodebookTopic finds a topic's codes by the reference's pattern search
// over a corpus and measures how often generations mention the topic,
// unsteered and with those codes activated at every position.
func cmdCodebookTopic(ctx context.Context, env *cliEnv, args []string) error {
	fs := newFlags(env, usage{name: "codebook topic", args: "DIR",
		summary: "find a topic's codes (the reference's regex code search) and steer generations with them (the paper's TinyStories measure)",
		example: "loupe codebook topic story-model --corpus stories.jsonl --pattern dragon --out topics.json",
		writes:  "the table on stdout; with --out, the codes, fractions and samples as JSON"})
	var df saeDataFlags
	df.mf.dev.register(fs) // --device and --weight-dtype; the model is DIR itself, so no --model
	var patterns codeFlags
	fs.Var(&patterns, "pattern", "topic regular expression, lower case (repeatable; default: the tutorial's seven topics)")
	corpus := fs.String("corpus", "", "the stories the codes are searched on: plain text (split by blank lines) or JSON lines with a \"text\" field")
	stories := fs.Int("stories", 2000, "stories drawn from --corpus for the search (the reference's cache: 2000)")
	topk := fs.Int("topk", 5, "codes kept per codebook group (the reference's default)")
	minPrec := fs.Float64("min-precision", 0.5, "a code's least precision on the pattern (the reference's default)")
	samples := fs.Int("samples", 10, "samples per prompt (the tutorial: 10)")
	maxTokens := fs.Int("max-tokens", 200, "new tokens per sample (the tutorial: 200)")
	temperature := fs.Float64("temperature", 1, "sampling temperature (the tutorial: 1)")
	seed := fs.Uint64("seed", 1, "seed of the story draw and the sampling")
	scope := fs.String("scope", "token", "where a code must fire: token (the reference's regex search: the tokens where the pattern starts) or story (every token from a story's first match on: topic codes)")
	maxCodes := fs.Int("max-codes", 0, "keep only the N most precise codes over all heads (0: all that pass; the tutorial activates 8 to 16)")
	var prompts codeFlags
	fs.Var(&prompts, "prompt", "a prompt (repeatable; default: the tutorial's four, \"\" among them: BOS alone)")
	lower := fs.Bool("lowercase-prompts", false, "lower-case the tutorial's prompts (for a model trained on lower-cased stories)")
	out := fs.String("out", "", "write the report as JSON here")
	dir, rest, err := leadingArg(fs, args, "loupe codebook topic DIR --corpus FILE [--pattern P ...] [flags]")
	if err != nil {
		return err
	}
	if err := parseFlags(fs, rest); err != nil {
		return err
	}
	if *scope != "token" && *scope != "story" {
		return fmt.Errorf("%w: --scope %q: want token or story", errUsage, *scope)
	}
	if *corpus == "" {
		return fmt.Errorf("%w: --corpus is required", errUsage)
	}
	if len(patterns) == 0 {
		patterns = codeFlags{"dragon", "slide", "friend", "flower", "fire", "prince|crown|king|castle", "baby"}
	}
	var res []*regexp.Regexp
	for _, p := range patterns {
		re, err := regexp.Compile(strings.ToLower(p))
		if err != nil {
			return fmt.Errorf("%w: --pattern %q: %v", errUsage, p, err)
		}
		// A pattern that matches nothing at all would count every sample
		// as on topic (and find its codes everywhere).
		if re.MatchString("") {
			return fmt.Errorf("%w: --pattern %q matches the empty string, so every sample would mention the topic", errUsage, p)
		}
		res = append(res, re)
	}
	if *samples < 1 || *maxTokens < 1 || *stories < 1 || *topk < 1 {
		return fmt.Errorf("%w: --samples, --max-tokens, --stories and --topk must be positive", errUsage)
	}
	if *maxCodes < 0 {
		return fmt.Errorf("%w: --max-codes %d: want 0 (all) or more", errUsage, *maxCodes)
	}
	if *minPrec < 0 || *minPrec >= 1 {
		return fmt.Errorf("%w: --min-precision %g: want a fraction in [0, 1)", errUsage, *minPrec)
	}
	if *temperature < 0 {
		return fmt.Errorf("%w: --temperature %g: want 0 (greedy) or more", errUsage, *temperature)
	}
	if _, err := os.Stat(filepath.Join(dir, "config.json")); err != nil {
		return fmt.Errorf("%s: codebook topic needs a model folder fine-tuned with its codebooks (config.json, the codebooks and a tokenizer.json; train_text.py writes one): %w", dir, err)
	}
	// The search and the sampling take minutes: find out now, not after
	// them, that the report has nowhere to go.
	if *out != "" {
		if err := makeOutDir("out", *out); err != nil {
			return err
		}
	}
	s, err := openCodebookSubject(dir, &df, false)
	if err != nil {
		return err
	}
	defer s.close()
	if s.tok == nil { // config.json is there (above): the model folder lacks its tokenizer
		return fmt.Errorf("%s: codebook topic needs a model folder fine-tuned with its codebooks and a tokenizer.json (train_text.py writes one)", dir)
	}
	bos, ok := s.tok.SpecialID("<|endoftext|>")
	if !ok {
		if bos = s.model.Config.BOS; bos < 0 {
			return fmt.Errorf("%s: the tokenizer has no <|endoftext|> and the config no bos_token_id", dir)
		}
	}
	texts, err := activations.ReadCorpus(*corpus)
	if err != nil {
		return err
	}
	// The reference's cache draws its examples at random (seeded).
	rng := rand.New(rand.NewPCG(*seed, 0x746f706963)) // "topic"
	rng.Shuffle(len(texts), func(i, j int) { texts[i], texts[j] = texts[j], texts[i] })
	texts = texts[:min(*stories, len(texts))]
	maxLen := s.model.Config.MaxPos
	var seqs [][]int
	for _, t := range texts {
		ids, err := s.tok.Encode(t, false)
		if err != nil {
			return fmt.Errorf("%s: %w", *corpus, err)
		}
		seq := append([]int{bos}, ids...)
		if maxLen > 0 && len(seq) > maxLen {
			seq = seq[:maxLen]
		}
		seqs = append(seqs, seq)
	}
	fmt.Fprintf(env.stderr, "searching codes on %d stories of %s\n", len(seqs), *corpus)
	acts, err := codebook.CollectCodeActs(ctx, s.model, s.set, s.tok, seqs)
	if err != nil {
		return err
	}
	opt := codebook.TopicOptions{Samples: *samples, MaxTokens: *maxTokens, Temperature: *temperature, Seed: *seed}
	if len(prompts) == 0 {
		prompts = codeFlags(codebook.TutorialPrompts)
	}
	for _, p := range prompts {
		if *lower {
			p = strings.ToLower(p)
		}
		opt.Prompts = append(opt.Prompts, p)
	}
	base, err := codebook.Generate(ctx, s.model, s.set, s.tok, bos, nil, opt)
	if err != nil {
		return err
	}
	type topicRow struct {
		Pattern        string                  `json:"pattern"`
		MatchedTokens  int                     `json:"matched_tokens"`
		Codes          []codebook.PatternCode  `json:"codes"`
		Baseline       float64                 `json:"baseline_fraction"`
		BaselinePrompt []float64               `json:"baseline_per_prompt"`
		Steered        float64                 `json:"steered_fraction"`
		SteeredPrompt  []float64               `json:"steered_per_prompt"`
		Paper          *[2]float64             `json:"paper_percent,omitempty"`
		Samples        [][]string              `json:"steered_samples"`
		Interventions  []codebook.Intervention `json:"-"`
	}
	report := struct {
		Model        string     `json:"model"`
		Corpus       string     `json:"corpus"`
		Stories      int        `json:"stories"`
		Prompts      []string   `json:"prompts"`
		Samples      int        `json:"samples_per_prompt"`
		MaxTokens    int        `json:"max_tokens"`
		Temperature  float64    `json:"temperature"`
		Scope        string     `json:"scope"`
		TopK         int        `json:"topk_per_group"`
		MinPrecision float64    `json:"min_precision"`
		MaxCodes     int        `json:"max_codes"`
		Baseline     [][]string `json:"baseline_samples"`
		Topics       []topicRow `json:"topics"`
	}{Model: dir, Corpus: *corpus, Stories: len(seqs), Prompts: opt.Prompts, Samples: *samples, MaxTokens: *maxTokens,
		Temperature: *temperature, Scope: *scope, TopK: *topk, MinPrecision: *minPrec, MaxCodes: *maxCodes, Baseline: base}
	fmt.Fprintf(env.stdout, "topic steering, %d prompts x %d samples, %d new tokens, temperature %g; codes: searched on %d stories at scope %s (top %d per head, precision > %g), activated at every position\n",
		len(opt.Prompts), *samples, *maxTokens, *temperature, len(seqs), *scope, *topk, *minPrec)
	fmt.Fprintf(env.stdout, "  %-26s %8s %6s %10s %10s   %s\n", "topic", "matches", "codes", "baseline", "steered", "paper (baseline -> steered)")
	for i, re := range res {
		codes, matched := acts.PatternCodes(s.set, re, *topk, *minPrec)
		if *scope == "story" {
			pos := acts.After(re)
			codes, matched = acts.CodesAt(s.set, pos, *topk, *minPrec), len(pos)
		}
		if *maxCodes > 0 && len(codes) > *maxCodes {
			sort.SliceStable(codes, func(i, j int) bool { return codes[i].Precision > codes[j].Precision })
			codes = codes[:*maxCodes]
		}
		row := topicRow{Pattern: patterns[i], MatchedTokens: matched, Codes: codes}
		row.BaselinePrompt, row.Baseline = codebook.TopicFraction(base, re)
		if len(codes) > 0 {
			ivs, err := codebook.ActivateCodes(s.set, codes)
			if err != nil {
				return err
			}
			gens, err := codebook.Generate(ctx, s.model, s.set, s.tok, bos, ivs, opt)
			if err != nil {
				return err
			}
			row.Samples = gens
			row.SteeredPrompt, row.Steered = codebook.TopicFraction(gens, re)
		}
		paper := "-"
		if p, ok := paperTopicSteering[patterns[i]]; ok {
			row.Paper = &p
			paper = fmt.Sprintf("%.1f%% -> %.1f%%", p[0], p[1])
		}
		steered := "no codes"
		if len(codes) > 0 {
			steered = fmt.Sprintf("%.1f%%", 100*row.Steered)
		}
		fmt.Fprintf(env.stdout, "  %-26s %8d %6d %9.1f%% %10s   %s\n", patterns[i], matched, len(codes), 100*row.Baseline, steered, paper)
		report.Topics = append(report.Topics, row)
	}
	if *out != "" {
		if err := atomicfile.Write(*out, func(w io.Writer) error {
			enc := json.NewEncoder(w)
			enc.SetIndent("", " ")
			return enc.Encode(report)
		}); err != nil {
			return err
		}
		fmt.Fprintf(env.stdout, "wrote %s\n", *out)
	}
	return nil
}
