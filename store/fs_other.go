//go:build !unix

package store

import (
	"io"
	"os"
)

// lockDir is a no-op where flock is missing: concurrent writers of one
// trace may then publish a mix of files, which readers detect by trace id.
func lockDir(dir string) (func(), error) { return func() {}, nil }

// lockTemp cannot lock where flock is missing: a dead writer's
// temporaries are then named, never removed.
func lockTemp(f *os.File) (bool, error) { return false, nil }

// tempOwner cannot tell a live writer from a dead one without flock.
func tempOwner(path string) (tempState, *os.File, error) { return tempUnknown, nil, nil }

// syncDir is a no-op where folders cannot be fsynced.
func syncDir(dir string) error { return nil }

// mapFile reads the whole file where mmap is unavailable.
func mapFile(f *os.File, size int64) ([]byte, func() error, error) {
	data := make([]byte, size)
	if _, err := io.ReadFull(f, data); err != nil {
		return nil, nil, err
	}
	return data, func() error { return nil }, nil
}
