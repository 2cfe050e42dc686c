package main

import (
	"context"
	"regexp"
	"testing"
	"time"

	"github.com/go-kratos/kratos/v2/log"
	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace/noop"
	"go.uber.org/goleak"

	"github.com/rocketbus/rocketbus/examples/internal/extest"
	"github.com/rocketbus/rocketbus/testkit/minirmq"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, extest.LeakOptions()...)
}

func TestKratosServiceDemo(t *testing.T) {
	extest.SkipUnderRace(t)
	var out extest.Output
	args := append(extest.BrokerArgs(t), "-demo", "-http", "127.0.0.1:0")
	require.NoError(t, run(context.Background(), args, &out), out.String())
	t.Log("\n" + out.String())

	m := regexp.MustCompile(`POST /orders -> order o-1001 placed \(request trace ([0-9a-f]{32})\)`).FindStringSubmatch(out.String())
	require.NotNil(t, m, "the order was placed through the HTTP API")
	traceID := m[1]
	assert.NotEqual(t, "00000000000000000000000000000000", traceID)
	assert.Len(t, out.Lines("GET /orders/o-1001 -> confirmed by the message handler (handler trace "+traceID+")"), 1)

	topic := regexp.MustCompile(`consuming (\S+) in group`).FindStringSubmatch(out.String())
	require.NotNil(t, topic)

	// The spans of that trace: the HTTP server span, the producer span of the publish, the
	// consumer span and Kratos' own server span in the bus server's middleware chain.
	var names []string
	for _, l := range out.Lines("span: trace " + traceID) {
		names = append(names, regexp.MustCompile(`span: trace \S+\s+(\S+)\s+(.*)$`).FindStringSubmatch(l)[1:]...)
	}
	assert.Subset(t, names, []string{"server", "/orders", "producer", "send " + topic[1], "consumer", "process " + topic[1]})
}

func TestKratosServiceBadFlag(t *testing.T) {
	var out extest.Output
	require.Error(t, run(context.Background(), []string{"-http"}, &out))
}

// The bus server owns a RocketMQ producer from its creation: the cleanup NewBusServer returns
// must stop it, even when the app never ran.
func TestBusServerCleanupStopsServer(t *testing.T) {
	nameServer := minirmq.NameServer(t)
	c := &Config{NameServers: []string{nameServer}, Topic: "cleanup_" + uuid.NewString()[:8], Group: "cleanup_" + uuid.NewString()[:8]}
	quiet := log.NewFilter(log.DefaultLogger, log.FilterLevel(log.LevelFatal))
	srv, cleanup, err := NewBusServer(c, NewOrderUsecase(nil), noop.NewTracerProvider(), propagation.TraceContext{}, quiet)
	require.NoError(t, err)
	cleanup()
	// Start on a stopped server returns at once; on a live one it would run until Stop.
	started := make(chan error, 1)
	go func() { started <- srv.Start(context.Background()) }()
	select {
	case err := <-started:
		assert.NoError(t, err)
	case <-time.After(20 * time.Second):
		t.Fatal("the cleanup did not stop the bus server")
	}
}
