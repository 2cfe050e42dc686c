// Package extest holds what the examples' tests share: the race-detector skip, the goroutines
// rocketmq-client-go leaves behind, and a writer tests can read while an example runs.
package extest

import (
	"bytes"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/google/uuid"
	"go.uber.org/goleak"

	"github.com/rocketbus/rocketbus/testkit/minirmq"
)

// SkipUnderRace skips a test that drives a RocketMQ push consumer when the race detector is on:
// rocketmq-client-go v2.1.2 has data races of its own between its consumer's Shutdown and its
// rebalance and pull goroutines. `make test` runs these tests again without -race.
// ROCKETBUS_RACE_BROKER_TESTS=1 runs them anyway.
func SkipUnderRace(t testing.TB) {
	t.Helper()
	if raceEnabled && os.Getenv("ROCKETBUS_RACE_BROKER_TESTS") == "" {
		t.Skip("rocketmq-client-go v2.1.2 races internally in its push consumer; `make test` runs this test without -race (set ROCKETBUS_RACE_BROKER_TESTS=1 to force it)")
	}
}

// BrokerArgs returns the flags that point an example at the broker under test: nothing (the
// example starts its embedded minirmq) unless $ROCKETMQ_NAMESRV names a real broker, in which
// case the example gets it and a prefix no earlier run used (the broker keeps its state).
func BrokerArgs(t testing.TB) []string {
	t.Helper()
	addr := os.Getenv(minirmq.EnvNameServer)
	if addr == "" {
		return nil
	}
	return []string{"-namesrv", addr, "-prefix", "t" + strings.ReplaceAll(uuid.NewString(), "-", "")[:12]}
}

// External reports whether the tests run against a broker named by $ROCKETMQ_NAMESRV.
func External() bool { return os.Getenv(minirmq.EnvNameServer) != "" }

// LeakOptions are the goroutines goleak must not blame on the examples: rocketmq-client-go
// starts some at package level and leaves others behind after Shutdown (a push consumer's
// long-polling pulls end only at the client's own 30 s request timeout).
func LeakOptions() []goleak.Option {
	const client = "github.com/apache/rocketmq-client-go/v2/"
	return []goleak.Option{
		goleak.IgnoreTopFunction(client + "internal/remote.(*ResponseFuture).waitResponse"),
		goleak.IgnoreAnyFunction(client + "internal.GetOrNewRocketMQClient.func1"),
		goleak.IgnoreAnyFunction(client + "primitive.WithRecover"),
		goleak.IgnoreAnyFunction(client + "consumer.(*pushConsumer).pullMessage"),
		goleak.IgnoreAnyFunction(client + "internal.(*rmqClient).RebalanceImmediately"),
		goleak.IgnoreAnyFunction(client + "internal/remote.(*remotingClient).receiveResponse"),
		goleak.IgnoreAnyFunction(client + "internal/remote.(*remotingClient).connect.func1"),
		goleak.IgnoreTopFunction("github.com/patrickmn/go-cache.(*janitor).Run"),
		goleak.IgnoreTopFunction("internal/poll.runtime_pollWait"),
	}
}

// Output is an io.Writer safe for concurrent use whose contents a test can read at any time.
type Output struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

// Write implements io.Writer.
func (o *Output) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.buf.Write(p)
}

// String returns everything written so far.
func (o *Output) String() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.buf.String()
}

// Lines returns the lines written so far that contain substr.
func (o *Output) Lines(substr string) []string {
	var out []string
	for _, l := range strings.Split(o.String(), "\n") {
		if strings.Contains(l, substr) {
			out = append(out, l)
		}
	}
	return out
}
