//go:build unix

package store

import (
	"os"
	"syscall"
)

// lockDir takes an exclusive advisory lock (flock) on a folder, so that
// writers publishing traces in it take turns. It returns the unlock.
func lockDir(dir string) (func(), error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	for {
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX)
		if err != syscall.EINTR {
			break
		}
	}
	if err == syscall.ENOLCK || err == syscall.EOPNOTSUPP || err == syscall.ENOSYS {
		// A file system without flock (some network mounts): publish
		// unlocked; readers still catch a mix by trace id.
		f.Close()
		return func() {}, nil
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return func() {
		syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	}, nil
}

// lockTemp takes an exclusive advisory lock on a writer's open temporary
// file, held until the file is closed, so that another process can tell a
// live writer's temporaries from a dead one's: the kernel drops the lock
// when its holder dies, SIGKILL included. It reports false where the file
// system has no flock.
func lockTemp(f *os.File) (bool, error) {
	err := flockRetry(f, syscall.LOCK_EX|syscall.LOCK_NB)
	switch err {
	case nil:
		return true, nil
	case syscall.ENOLCK, syscall.EOPNOTSUPP, syscall.ENOSYS:
		return false, nil
	}
	return false, err
}

// tempOwner says whether the writer of the temporary file at path is
// alive (it holds the file's lock), dead (the lock is free), or cannot be
// told (no flock here). When dead, the file is returned open and locked so
// that the caller removes it before anyone could take it; close it after.
func tempOwner(path string) (tempState, *os.File, error) {
	f, err := os.Open(path)
	if err != nil {
		return tempUnknown, nil, err
	}
	switch err := flockRetry(f, syscall.LOCK_EX|syscall.LOCK_NB); err {
	case nil:
		return tempDead, f, nil
	case syscall.EWOULDBLOCK:
		f.Close()
		return tempAlive, nil, nil
	case syscall.ENOLCK, syscall.EOPNOTSUPP, syscall.ENOSYS:
		f.Close()
		return tempUnknown, nil, nil
	default:
		f.Close()
		return tempUnknown, nil, err
	}
}

func flockRetry(f *os.File, how int) error {
	for {
		err := syscall.Flock(int(f.Fd()), how)
		if err != syscall.EINTR {
			return err
		}
	}
}

// syncDir makes renames in dir durable.
func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// mapFile memory-maps a whole file read-only. The returned release unmaps
// it. An empty file maps to an empty slice.
func mapFile(f *os.File, size int64) ([]byte, func() error, error) {
	if size == 0 {
		return nil, func() error { return nil }, nil
	}
	if int64(int(size)) != size {
		return nil, nil, syscall.EFBIG
	}
	data, err := syscall.Mmap(int(f.Fd()), 0, int(size), syscall.PROT_READ, syscall.MAP_SHARED)
	if err != nil {
		return nil, nil, err
	}
	return data, func() error { return syscall.Munmap(data) }, nil
}
