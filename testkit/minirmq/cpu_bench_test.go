package minirmq_test

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/apache/rocketmq-client-go/v2/primitive"
)

// processCPU reads a process's user+system CPU time from /proc.
func processCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// Fields after the command name, which is in parentheses and may hold spaces.
	fields := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	utime, _ := strconv.ParseInt(fields[11], 10, 64)
	stime, _ := strconv.ParseInt(fields[12], 10, 64)
	const clockTicks = 100 // USER_HZ on Linux
	return time.Duration(utime+stime) * time.Second / clockTicks, nil
}

// startMinirmqProcess runs cmd/minirmq as a child so its CPU time is its own.
func startMinirmqProcess(b *testing.B) (addr string, pid int) {
	bin := filepath.Join(b.TempDir(), "minirmq")
	if out, err := exec.Command("go", "build", "-o", bin, "../../cmd/minirmq").CombinedOutput(); err != nil {
		b.Fatalf("building cmd/minirmq: %v\n%s", err, out)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	addr = ln.Addr().String()
	ln.Close()
	cmd := exec.Command(bin, "-listen", addr)
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	if !bufio.NewScanner(stdout).Scan() {
		b.Fatal("cmd/minirmq did not start")
	}
	return addr, cmd.Process.Pid
}

// BenchmarkBrokerCPUPerMessage measures the broker's CPU per 1 KiB message at saturation
// (SendSync from 8 goroutines through rocketmq-client-go), reading the broker process's CPU time
// from /proc. The minirmq case runs cmd/minirmq as a child process. With ROCKETMQ_NAMESRV and
// ROCKETMQ_BROKER_PIDS (the JVM broker's and name server's PIDs, comma separated) an "external"
// case measures a real broker in the same run, so -count interleaves the two.
func BenchmarkBrokerCPUPerMessage(b *testing.B) {
	b.Run("minirmq", func(b *testing.B) {
		addr, pid := startMinirmqProcess(b)
		benchBrokerCPU(b, addr, []int{pid})
	})
	addr := os.Getenv("ROCKETMQ_NAMESRV")
	var pids []int
	for _, f := range strings.Split(os.Getenv("ROCKETMQ_BROKER_PIDS"), ",") {
		if pid, err := strconv.Atoi(strings.TrimSpace(f)); err == nil {
			pids = append(pids, pid)
		}
	}
	if addr != "" && len(pids) > 0 {
		b.Run("external", func(b *testing.B) { benchBrokerCPU(b, addr, pids) })
	}
}

func benchBrokerCPU(b *testing.B, addr string, pids []int) {
	p := benchProducer(b, addr)
	topic := unique("CPU")
	body := make([]byte, 1024)
	if _, err := p.SendSync(context.Background(), primitive.NewMessage(topic, body)); err != nil {
		b.Fatal(err)
	}
	cpu := func() time.Duration {
		var total time.Duration
		for _, pid := range pids {
			d, err := processCPU(pid)
			if err != nil {
				b.Fatal(err)
			}
			total += d
		}
		return total
	}
	before := cpu()
	b.ResetTimer()
	var wg sync.WaitGroup
	next := make(chan struct{})
	go func() {
		for i := 0; i < b.N; i++ {
			next <- struct{}{}
		}
		close(next)
	}()
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range next {
				if _, err := p.SendSync(context.Background(), primitive.NewMessage(topic, body)); err != nil {
					b.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	b.StopTimer()
	used := cpu() - before
	b.ReportMetric(float64(used.Microseconds())/float64(b.N), "broker-cpu-µs/msg")
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
}
