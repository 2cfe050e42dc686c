package main

import (
	"context"
	"fmt"
	"regexp"
	"strconv"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/rocketbus/rocketbus/examples/internal/extest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, extest.LeakOptions()...)
}

func TestSeckill(t *testing.T) {
	extest.SkipUnderRace(t)
	const requests, rate, stock = 300, 200, 50
	args := append(extest.BrokerArgs(t), "-requests", strconv.Itoa(requests), "-rate", strconv.Itoa(rate),
		"-stock", strconv.Itoa(stock), "-window", "500ms")
	var out extest.Output
	require.NoError(t, run(context.Background(), args, &out), out.String())
	t.Log("\n" + out.String())

	// Every request was handled once, and the item was not oversold.
	assert.Len(t, out.Lines(fmt.Sprintf("result: %d requests handled, %d bought an item, %d found it sold out", requests, stock, requests-stock)), 1)
	assert.Len(t, out.Lines("bought the last item"), 1)
	assert.Empty(t, out.Lines("redelivered"))

	// The burst queued up in the broker rather than hitting the service at once...
	m := regexp.MustCompile(`backlog right after the burst: (\d+)`).FindStringSubmatch(out.String())
	require.NotNil(t, m)
	backlog, _ := strconv.Atoi(m[1])
	assert.Positive(t, backlog, "requests wait in the broker while the throttle holds the service back")
	assert.NotEmpty(t, out.Lines("backlog: 0 requests waiting"))

	// ...and the service never took more than the throttle allows per window. One tick of
	// slack: Watermill's throttle is a time.Ticker, which keeps one tick buffered; and 10% for
	// the scheduler on a busy machine running a handler late after its tick. Without the
	// throttle the whole burst lands within one window.
	m = regexp.MustCompile(`busiest 500ms window: (\d+) requests handled \(the throttle allows (\d+)\)`).FindStringSubmatch(out.String())
	require.NotNil(t, m)
	busiest, _ := strconv.Atoi(m[1])
	allowed, _ := strconv.Atoi(m[2])
	require.Equal(t, rate/2, allowed)
	assert.LessOrEqual(t, busiest, allowed+1+allowed/10)

	if !extest.External() {
		assert.Len(t, out.Lines("has 0 unconsumed messages"), 1, "the broker agrees that nothing is left")
	}
}
