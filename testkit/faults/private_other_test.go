//go:build !linux

package faults

import "testing"

// privateServer: the private Redis and PostgreSQL servers of the restart and SIGKILL cases are
// run and cleaned up with Linux facilities (/proc, the parent-death signal); elsewhere those
// cases skip on redis and postgres.
func privateServer(t *testing.T, caseName, name string) (*brokerProcess, *target) {
	skipCase(t, caseName, name, "the private "+name+" server of this case runs only on Linux")
	return nil, nil
}
