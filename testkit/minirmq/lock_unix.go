//go:build unix

package minirmq

import (
	"errors"
	"os"
	"syscall"
)

// lockDir takes an exclusive advisory lock on path, so two servers never write one data
// directory. The kernel releases it when the process dies, so a crash leaves nothing stale.
func lockDir(path string) (unlock func() error, err error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, errors.New("in use by another minirmq (its LOCK file is held)")
		}
		return nil, err
	}
	return f.Close, nil
}
