//go:build !linux

package faults

import "syscall"

// childProcAttr: only Linux can tie a child's life to its parent's; elsewhere the test's
// cleanup kills the broker child.
func childProcAttr() *syscall.SysProcAttr { return nil }
