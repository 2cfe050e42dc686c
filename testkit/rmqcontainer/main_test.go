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

// ignoredGoroutines are not ours to stop. The Docker client's HTTP transport keeps idle
// keep-alive connections (persistConn read/write loops) after testcontainers is done with it and
// offers no way to close them all. rocketmq-client-go starts package-level goroutines, and a push
// consumer's Shutdown leaves its long-polling pull futures until the client's own request
// timeout.
var ignoredGoroutines = []goleak.Option{
	goleak.IgnoreTopFunction("net/http.(*persistConn).readLoop"),
	goleak.IgnoreTopFunction("net/http.(*persistConn).writeLoop"),
	goleak.IgnoreTopFunction("github.com/apache/rocketmq-client-go/v2/internal/remote.(*ResponseFuture).waitResponse"),
	goleak.IgnoreAnyFunction("github.com/apache/rocketmq-client-go/v2/internal.GetOrNewRocketMQClient.func1"),
	goleak.IgnoreAnyFunction("github.com/patrickmn/go-cache.(*janitor).Run"),
	goleak.IgnoreAnyFunction("github.com/apache/rocketmq-client-go/v2/internal/remote.(*remotingClient).receiveResponse"),
	goleak.IgnoreAnyFunction("github.com/apache/rocketmq-client-go/v2/internal/remote.(*remotingClient).connect.func1"),
	goleak.IgnoreAnyFunction("github.com/apache/rocketmq-client-go/v2/primitive.WithRecover"),
}
