package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/loupe-dev/loupe/store"
)

func cmdExport(ctx context.Context, env *cliEnv, args []string) error {
	fs := newFlags(env, usage{name: "export", args: "FILE.arrow",
		example: "loupe export loupe-demo/trace.arrow --to parquet",
		writes:  "one Parquet or CSV file per table next to --out (default: next to FILE), and their paths on stdout"})
	to := fs.String("to", "", "output format: parquet or csv")
	out := fs.String("out", "", "output path of the main table (default: FILE with its extension replaced); other tables go next to it")
	var path string
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		path, args = args[0], args[1:]
	}
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if path == "" {
		return fmt.Errorf("%w: loupe export FILE --to parquet|csv [--out PATH]", errUsage)
	}
	format := store.Format(*to)
	if format != store.Parquet && format != store.CSV {
		return fmt.Errorf("%w: --to must be parquet or csv", errUsage)
	}
	if *out != "" && !strings.HasSuffix(*out, "."+*to) {
		return fmt.Errorf("%w: --out must end in .%s", errUsage, *to)
	}
	if *out != "" {
		if err := makeOutDir("out", *out); err != nil {
			return err
		}
	}
	files, err := store.Export(ctx, path, *out, format)
	for _, f := range files {
		fmt.Fprintln(env.stdout, f)
	}
	return err
}
