package faults

import "syscall"

// childProcAttr makes the kernel kill a broker child process when this test process dies, so a
// test binary killed by its timeout leaves no broker listening.
func childProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
