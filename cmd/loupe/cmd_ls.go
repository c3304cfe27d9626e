package main

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/loupe-dev/loupe/store"
)

// lsSummary is what `loupe ls --json` prints.
type lsSummary struct {
	Path      string            `json:"path"`
	Schema    string            `json:"schema"`
	TraceID   string            `json:"trace_id"`
	MainTable string            `json:"main_table"`
	Run       store.RunInfo     `json:"run"`
	Prompts   []int             `json:"prompts,omitempty"`
	Layers    []int             `json:"layers,omitempty"`
	Hooks     []string          `json:"hooks,omitempty"`
	Tables    []store.TableInfo `json:"tables"`
	Bytes     map[string]int64  `json:"bytes"`
	// Leftovers are temporary files of writers that died mid-write, in the
	// trace's folder.
	Leftovers []store.Temp `json:"leftovers,omitempty"`
	// Unreadable holds, per table, why its file does not open (truncated,
	// from another write, fewer batches than the index says).
	Unreadable map[string]string `json:"unreadable,omitempty"`
}

// unreadableTables opens every table's file (footer and schema only) and
// says why each that fails does: the index alone would list a truncated
// sibling as whole.
func unreadableTables(tr *store.Trace) map[string]string {
	bad := map[string]string{}
	for _, in := range tr.Tables() {
		if _, err := tr.Table(in.Name); err != nil {
			bad[in.Name] = strings.TrimPrefix(err.Error(), "store: ")
		}
	}
	return bad
}

// errUnreadable is what ls returns, after its listing, when tables or
// traces it lists cannot be read.
func errUnreadable(n int, what string) error {
	return fmt.Errorf("%d of the %s listed cannot be read (see above)", n, what)
}

func cmdLs(ctx context.Context, env *cliEnv, args []string) error {
	fs := newFlags(env, usage{name: "ls", args: "FILE.arrow|DIR",
		example: "loupe ls loupe-demo/trace.arrow --json",
		writes:  "a summary of the trace (run, prompts, hooks, tables, sizes) on stdout, read from footers and the index only; for a folder, its traces; both name the temporary files a killed writer left (--clean removes them)"})
	asJSON := fs.Bool("json", false, "print a JSON summary")
	index := fs.Bool("index", false, "also print the batch index (one line per record batch)")
	clean := fs.Bool("clean", false, "remove the temporary files that writers killed mid-write left in the folder")
	var path string
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		path, args = args[0], args[1:]
	}
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if path == "" {
		return fmt.Errorf("%w: loupe ls FILE|DIR [--json] [--index] [--clean]", errUsage)
	}
	if st, err := os.Stat(path); err == nil && st.IsDir() {
		return lsDir(env, path, *asJSON, *clean)
	}
	leftovers, err := leftoversIn(filepath.Dir(path), *clean)
	if err != nil {
		return err
	}
	// Only the footers, schemas and the small index are read.
	tr, err := store.Open(path)
	if err != nil {
		// A sibling file, or a trace missing its index: describe the file alone.
		t, terr := store.OpenTable(path)
		if terr != nil {
			printLeftovers(env, leftovers) // what a killed write of it left, say
			return err
		}
		defer t.Close()
		if err := lsTable(env, t, *asJSON); err != nil {
			return err
		}
		if !*asJSON {
			printLeftovers(env, leftovers)
		}
		return nil
	}
	defer tr.Close()
	s := lsSummary{Path: path, Schema: strconv.Itoa(tr.SchemaVersion()), TraceID: tr.TraceID(), MainTable: tr.MainTable(),
		Run: tr.Run(), Prompts: tr.Prompts(), Layers: tr.Layers(), Hooks: tr.Hooks(), Tables: tr.Tables(), Bytes: map[string]int64{},
		Leftovers: leftovers, Unreadable: unreadableTables(tr)}
	for _, in := range s.Tables {
		p := store.SiblingPath(path, in.Name)
		if in.Name == s.MainTable {
			p = path
		}
		if st, err := os.Stat(p); err == nil {
			s.Bytes[in.Name] = st.Size()
		}
	}
	if *asJSON {
		enc := json.NewEncoder(env.stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(s); err != nil {
			return err
		}
		if len(s.Unreadable) > 0 {
			return errUnreadable(len(s.Unreadable), "tables")
		}
		return nil
	}
	w := env.stdout
	r := s.Run
	fmt.Fprintf(w, "trace         %s (schema v%s, trace id %s)\n", path, s.Schema, s.TraceID)
	fmt.Fprintf(w, "model         %s\n", orDash(r.ModelPath))
	fmt.Fprintf(w, "model hash    %s\n", orDash(r.ModelHash))
	fmt.Fprintf(w, "architecture  %s\n", orDash(r.Architecture))
	fmt.Fprintf(w, "created       %s by loupe %s\n", r.CreatedAt.Format("2006-01-02 15:04:05 UTC"), orDash(r.LoupeVersion))
	if len(r.CommandLine) > 0 {
		fmt.Fprintf(w, "command       %s\n", strings.Join(r.CommandLine, " "))
	}
	fmt.Fprintf(w, "prompts       %s\n", intRange(s.Prompts))
	fmt.Fprintf(w, "layers        %s\n", intRange(s.Layers))
	fmt.Fprintf(w, "hooks         %d%s\n", len(s.Hooks), hookSummary(s.Hooks))
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "TABLE\tKIND\tROWS\tBATCHES\tSHAPE\tDTYPE\tCODEC\tSIZE\tFILE")
	for _, in := range s.Tables {
		shape := "-"
		if len(in.Shape) > 0 {
			shape = fmt.Sprint(in.Shape)
		}
		file := filepath.Base(store.SiblingPath(path, in.Name))
		if in.Name == s.MainTable {
			file = filepath.Base(path) + " (main)"
		}
		if _, bad := s.Unreadable[in.Name]; bad {
			file += " (cannot read)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%s\t%s\t%s\t%s\t%s\n", in.Name, in.Kind, in.Rows, in.Batches, shape, orDash(string(in.DType)),
			in.Compression, humanBytes(s.Bytes[in.Name]), file)
	}
	tw.Flush()
	if *index {
		fmt.Fprintln(w)
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "TABLE\tBATCH\tFIRST_ROW\tROWS\tPROMPT\tHOOK\tLAYER\tHEAD")
		for _, e := range tr.Index() {
			fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%s\t%d\t%d\n", e.Table, e.Batch, e.FirstRow, e.Rows, e.PromptID, orDash(e.Hook), e.Layer, e.Head)
		}
		tw.Flush()
	}
	printLeftovers(env, leftovers)
	if len(s.Unreadable) > 0 {
		fmt.Fprintln(w)
		for _, name := range slices.Sorted(maps.Keys(s.Unreadable)) {
			fmt.Fprintf(w, "cannot read   %s: %s\n", name, s.Unreadable[name])
		}
		return errUnreadable(len(s.Unreadable), "tables")
	}
	return nil
}

// leftoversIn finds (and with clean removes) the temporary files of dead
// writers in dir.
func leftoversIn(dir string, clean bool) ([]store.Temp, error) {
	if clean {
		return store.CleanTemps(dir)
	}
	return store.FindTemps(dir)
}

// printLeftovers names a dead writer's temporary files and their size.
func printLeftovers(env *cliEnv, temps []store.Temp) {
	if len(temps) == 0 {
		return
	}
	w := env.stdout
	var total int64
	removed := 0
	for _, t := range temps {
		total += t.Bytes
		if t.Removed {
			removed++
		}
	}
	fmt.Fprintf(w, "\nleftovers     %d temporary files (%s) of writers that did not finish (killed or crashed mid-write):\n", len(temps), humanBytes(total))
	for _, t := range temps {
		state := "its writer is gone"
		switch {
		case t.Removed:
			state = "removed"
		case !t.Dead:
			state = "this file system cannot tell whether its writer still runs"
		}
		fmt.Fprintf(w, "  %s  %s  (%s)\n", t.Path, humanBytes(t.Bytes), state)
	}
	if removed < len(temps) {
		fmt.Fprintf(w, "  `loupe ls %s --clean` removes those whose writer is gone; the next trace written in this folder does too.\n", filepath.Dir(temps[0].Path))
	}
}

// lsDirEntry is one trace of `loupe ls DIR`.
type lsDirEntry struct {
	Path      string `json:"path"`
	MainTable string `json:"main_table"`
	Model     string `json:"model"`
	Tables    int    `json:"tables"`
	Bytes     int64  `json:"bytes"`
	Error     string `json:"error,omitempty"`
}

// lsDir lists the traces in a folder (their main files) and the leftovers
// of dead writers.
func lsDir(env *cliEnv, dir string, asJSON, clean bool) error {
	leftovers, err := leftoversIn(dir, clean)
	if err != nil {
		return err
	}
	files, err := filepath.Glob(filepath.Join(dir, "*.arrow"))
	if err != nil {
		return err
	}
	var traces []lsDirEntry
	for _, f := range files {
		t, err := store.OpenTable(f)
		if err != nil {
			traces = append(traces, lsDirEntry{Path: f, Error: strings.TrimPrefix(err.Error(), "store: ")})
			continue
		}
		main := t.MainTable() == t.Info().Name
		e := lsDirEntry{Path: f, MainTable: t.MainTable(), Model: t.Run().ModelPath}
		t.Close()
		if !main {
			continue // a sibling: counted with its main file
		}
		tr, err := store.Open(f)
		if err != nil {
			e.Error = strings.TrimPrefix(err.Error(), "store: ")
			traces = append(traces, e)
			continue
		}
		for _, in := range tr.Tables() {
			p := store.SiblingPath(f, in.Name)
			if in.Name == tr.MainTable() {
				p = f
			}
			if st, err := os.Stat(p); err == nil {
				e.Bytes += st.Size()
			}
		}
		e.Tables = len(tr.Tables())
		if bad := unreadableTables(tr); len(bad) > 0 {
			name := slices.Sorted(maps.Keys(bad))[0] // the same one every run
			e.Error = name + ": " + bad[name]
		}
		tr.Close()
		traces = append(traces, e)
	}
	if asJSON {
		enc := json.NewEncoder(env.stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(map[string]any{"dir": dir, "traces": traces, "leftovers": leftovers}); err != nil {
			return err
		}
		return unreadableTraces(traces)
	}
	if len(traces) == 0 {
		fmt.Fprintf(env.stdout, "%s: no Loupe trace\n", dir)
	} else {
		tw := tabwriter.NewWriter(env.stdout, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "TRACE\tMAIN TABLE\tTABLES\tSIZE\tMODEL")
		for _, e := range traces {
			if e.Error != "" {
				fmt.Fprintf(tw, "%s\t-\t-\t-\tcannot read: %s\n", e.Path, e.Error)
				continue
			}
			fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\n", e.Path, e.MainTable, e.Tables, humanBytes(e.Bytes), orDash(e.Model))
		}
		tw.Flush()
	}
	printLeftovers(env, leftovers)
	return unreadableTraces(traces)
}

// unreadableTraces is the error of a folder listing some of whose traces
// cannot be read; nil if all can.
func unreadableTraces(traces []lsDirEntry) error {
	n := 0
	for _, e := range traces {
		if e.Error != "" {
			n++
		}
	}
	if n > 0 {
		return errUnreadable(n, "files")
	}
	return nil
}

// lsTable describes one Loupe Arrow file on its own.
func lsTable(env *cliEnv, t *store.Table, asJSON bool) error {
	in := t.Info()
	if asJSON {
		enc := json.NewEncoder(env.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(map[string]any{"path": t.Path(), "table": in, "trace_id": t.TraceID(), "main_table": t.MainTable(),
			"run": t.Run(), "schema": t.Schema().String()})
	}
	w := env.stdout
	fmt.Fprintf(w, "file          %s\n", t.Path())
	fmt.Fprintf(w, "table         %s (kind %s), %d record batches\n", in.Name, in.Kind, t.NumBatches())
	fmt.Fprintf(w, "trace id      %s (main table %s)\n", t.TraceID(), t.MainTable())
	fmt.Fprintf(w, "model         %s\n", orDash(t.Run().ModelPath))
	fmt.Fprintln(w, "columns")
	for _, f := range t.Schema().Fields() {
		fmt.Fprintf(w, "  %-12s %s\n", f.Name, f.Type)
	}
	return nil
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// intRange prints sorted ints compactly: "4: 0..3" or "3: 0, 5, 9".
func intRange(v []int) string {
	if len(v) == 0 {
		return "-"
	}
	if v[len(v)-1]-v[0] == len(v)-1 {
		return fmt.Sprintf("%d: %d..%d", len(v), v[0], v[len(v)-1])
	}
	parts := make([]string, 0, min(len(v), 8))
	for i, x := range v {
		if i == 8 {
			parts = append(parts, "...")
			break
		}
		parts = append(parts, strconv.Itoa(x))
	}
	return fmt.Sprintf("%d: %s", len(v), strings.Join(parts, ", "))
}

// hookSummary folds blocks.N.rest into blocks.*.rest.
func hookSummary(hooks []string) string {
	seen := map[string]bool{}
	var out []string
	for _, h := range hooks {
		parts := strings.SplitN(h, ".", 3)
		if len(parts) == 3 && parts[0] == "blocks" {
			if _, err := strconv.Atoi(parts[1]); err == nil {
				h = "blocks.*." + parts[2]
			}
		}
		if !seen[h] {
			seen[h] = true
			out = append(out, h)
		}
	}
	if len(out) == 0 {
		return ""
	}
	return ": " + strings.Join(out, ", ")
}

func humanBytes(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}
