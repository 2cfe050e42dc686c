//go:build !unix

package minirmq

// lockDir does nothing where flock is missing: keep one server per data directory by hand.
func lockDir(string) (func() error, error) { return func() error { return nil }, nil }
