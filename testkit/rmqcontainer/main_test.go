package rmqcontainer

import (
	"os"
	"testing"

	"github.com/apache/rocketmq-client-go/v2/rlog"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	// The reaper (Ryuk) image cannot be pulled where no registry is reachable; every test
	// terminates its containers in t.Cleanup instead. An explicit setting wins.
	if _, ok := os.LookupEnv("TESTCONTAINERS_RYUK_DISABLED"); !ok {
		_ = os.Setenv("TESTCONTAINERS_RYUK_DISABLED", "true")
	}
	rlog.SetLogLevel("fatal")
	goleak.VerifyTestMain(m, ignoredGoroutines...)
}

// ignoredGoroutines belong to rocketmq-client-go and are not ours to stop: it starts
// package-level goroutines, and a push consumer's Shutdown leaves its long-polling pulls until
// the client's own request timeout. (testcontainers closes its Docker client after each call, so
// no idle HTTP connection goroutines need ignoring.)
var ignoredGoroutines = []goleak.Option{
	goleak.IgnoreTopFunction("github.com/apache/rocketmq-client-go/v2/internal/remote.(*ResponseFuture).waitResponse"),
	goleak.IgnoreAnyFunction("github.com/apache/rocketmq-client-go/v2/internal.GetOrNewRocketMQClient.func1"),
	goleak.IgnoreAnyFunction("github.com/patrickmn/go-cache.(*janitor).Run"),
	goleak.IgnoreAnyFunction("github.com/apache/rocketmq-client-go/v2/internal/remote.(*remotingClient).receiveResponse"),
	goleak.IgnoreAnyFunction("github.com/apache/rocketmq-client-go/v2/internal/remote.(*remotingClient).connect.func1"),
	goleak.IgnoreAnyFunction("github.com/apache/rocketmq-client-go/v2/primitive.WithRecover"),
}
