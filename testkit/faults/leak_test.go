package faults

import (
	"bytes"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// brokerGoroutines are stack fragments of goroutines on the broker's side of a connection
// (minirmq, the embedded nats-server, the suite's TCP proxy): they live as long as some client
// keeps its connection (the backend's admin client, a database/sql pool shared with the
// publisher) and are not the consumer's.
var brokerGoroutines = []string{
	"github.com/rocketbus/rocketbus/testkit/minirmq.",
	"github.com/nats-io/nats-server/v2/server.",
	"github.com/rocketbus/rocketbus/testkit/faults.(*tcpProxy)",
}

// clientGoroutines are stack fragments of client-library goroutines that may outlive a Close
// for a while: rocketmq-client-go keeps its connections and long-polling futures after a push
// consumer's Shutdown (they end at its 30 s request timeout, see ignoredGoroutines), and
// go-redis stops its maintenance-notification circuit breaker only when its last pool closes.
var clientGoroutines = []string{
	"github.com/apache/rocketmq-client-go/v2/",
	"github.com/patrickmn/go-cache.",
	"github.com/redis/go-redis/v9/maintnotifications.",
}

// goroutineStacks returns every goroutine's stack by goroutine id.
func goroutineStacks() map[int]string {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	out := map[int]string{}
	for _, g := range bytes.Split(buf, []byte("\n\n")) {
		s := string(g)
		fields := strings.Fields(s)
		if len(fields) < 2 || fields[0] != "goroutine" {
			continue
		}
		id, err := strconv.Atoi(fields[1])
		if err == nil {
			out[id] = s
		}
	}
	return out
}

// leakedSince returns the stacks of goroutines started after before that are still running
// and are not foreign, waiting up to 10 s for them to end (Close may leave goroutines that are
// about to return). A goroutine running rocketbus or Watermill code is never foreign.
func leakedSince(before map[int]string) []string {
	deadline := time.Now().Add(10 * time.Second)
	for {
		var leaked []string
		for id, s := range goroutineStacks() {
			if _, ok := before[id]; ok || !isOurs(s) {
				continue
			}
			leaked = append(leaked, s)
		}
		if len(leaked) == 0 || time.Now().After(deadline) {
			return leaked
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func isOurs(stack string) bool {
	for _, f := range brokerGoroutines {
		if strings.Contains(stack, f) {
			return false
		}
	}
	if strings.Contains(stack, "github.com/rocketbus/rocketbus/") && !strings.Contains(stack, "testkit/faults.goroutineStacks") ||
		strings.Contains(stack, "github.com/ThreeDotsLabs/") {
		return true
	}
	for _, f := range clientGoroutines {
		if strings.Contains(stack, f) {
			return false
		}
	}
	return true
}
