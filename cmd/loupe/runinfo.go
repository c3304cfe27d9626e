package main

import (
	"encoding/json"
	"os"
	"runtime/debug"
	"strings"

	"github.com/loupe-dev/loupe/probe"
	"github.com/loupe-dev/loupe/store"
)

// releaseVersion is Loupe's version when the build carries no module
// version of its own (a `go build` outside a tagged module download).
const releaseVersion = "0.1.0-dev"

// runInfo describes a run over a loaded model for the store's metadata.
func runInfo(modelName string, m *probe.Loaded) store.RunInfo {
	cfg, _ := json.Marshal(m.Config)
	return store.RunInfo{
		ModelPath:    modelName,
		ModelHash:    "sha256:" + m.Weights.ContentHash,
		Architecture: string(m.Config.Family),
		Config:       cfg,
		LoupeVersion: buildVersion(),
		CommandLine:  os.Args,
	}
}

// buildVersion is the module version the binary was built from and the
// version-control commit it records: "v0.1.2 (commit 1a2b3c4d5e6f, 2026-12-01T12:00:00Z)",
// with "+dirty" on the commit when the tree had uncommitted changes. The Go
// tool stamps both into binaries built inside a git checkout; test binaries
// and builds with -buildvcs=false carry no commit, and say so.
func buildVersion() string {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return releaseVersion + " (no build information)"
	}
	version := info.Main.Version
	if version == "" || version == "(devel)" {
		version = releaseVersion
	}
	var rev, when string
	dirty := false
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.time":
			when = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	if rev == "" {
		return version + " (no commit recorded)"
	}
	var b strings.Builder
	b.WriteString(version + " (commit " + rev)
	if dirty {
		b.WriteString("+dirty")
	}
	if when != "" {
		b.WriteString(", " + when)
	}
	b.WriteString(")")
	return b.String()
}
