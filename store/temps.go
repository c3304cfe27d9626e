package store

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
)

// A writer streams each table to a hidden temporary file next to its final
// name (".t.attention.arrow.tmp-<trace id>") and renames it at Commit. A
// writer that dies mid-write (killed, out of memory, power loss) leaves
// those files behind. Each writer holds an advisory lock on its temporary
// files while it lives (see lockTemp), so a later process can tell a dead
// writer's files from a live one's and remove only the dead ones. The next
// writer in a folder does (Create); `loupe ls` names them.

// Temp is a temporary file of an unfinished write, found in a folder.
type Temp struct {
	Path  string `json:"path"`
	Bytes int64  `json:"bytes"`
	// Dead says its writer is gone. False means this file system cannot
	// tell (no flock): the file is named, never removed.
	Dead    bool `json:"dead"`
	Removed bool `json:"removed"`
}

type tempState int

const (
	tempUnknown tempState = iota
	tempAlive
	tempDead
)

// tempName matches the writer's temporary files (see Writer.table).
var tempName = regexp.MustCompile(`^\..+\.arrow\.tmp-[0-9a-f]{12}$`)

// FindTemps lists the temporary files in dir that no live writer holds:
// those of writers that died, and, where the file system cannot tell, every
// temporary file. Live writers' files are left out.
func FindTemps(dir string) ([]Temp, error) { return scanTemps(dir, false) }

// CleanTemps removes the temporary files of dead writers in dir, under the
// folder's lock, and returns every leftover it found (Removed says which
// went).
func CleanTemps(dir string) ([]Temp, error) {
	unlock, err := lockDir(dir)
	if err != nil {
		return nil, fmt.Errorf("store: clean %s: lock: %w", dir, err)
	}
	defer unlock()
	return scanTemps(dir, true)
}

func scanTemps(dir string, remove bool) ([]Temp, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	var out []Temp
	for _, e := range entries {
		if !e.Type().IsRegular() || !tempName.MatchString(e.Name()) {
			continue
		}
		p := filepath.Join(dir, e.Name())
		state, f, err := tempOwner(p)
		if err != nil || state == tempAlive {
			continue // gone meanwhile, or a live writer's
		}
		t := Temp{Path: p, Dead: state == tempDead}
		if st, err := os.Stat(p); err == nil {
			t.Bytes = st.Size()
		}
		if remove && t.Dead {
			// Still holding its lock: no writer can have taken it since.
			t.Removed = os.Remove(p) == nil
		}
		if f != nil {
			f.Close()
		}
		out = append(out, t)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	return out, nil
}
