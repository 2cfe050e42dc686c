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

	// The backlog drained. How large it grew and how closely the throttle held the rate are
	// timing measurements: BenchmarkSeckill reports them.
	assert.NotEmpty(t, out.Lines("backlog: 0 requests waiting"))

	// Read through rocketmq.Admin, so on a real broker too.
	assert.Len(t, out.Lines("has 0 unconsumed messages"), 1, "the broker agrees that nothing is left")
}

// BenchmarkSeckill runs the demo and reports what the throttle did: the backlog right after the
// burst (requests waiting in the broker, not in the service), the most requests handled in one
// window and what the throttle allows per window. Watermill's throttle is a time.Ticker that
// keeps one tick buffered, so busiest can exceed allowed by one, and by a little more on a busy
// machine that runs a handler late; without the throttle the whole burst lands in one window.
func BenchmarkSeckill(b *testing.B) {
	const requests, rate, stock = 300, 200, 50
	var backlog, busiest, allowed float64
	for range b.N {
		args := append(extest.BrokerArgs(b), "-requests", strconv.Itoa(requests), "-rate", strconv.Itoa(rate),
			"-stock", strconv.Itoa(stock), "-window", "500ms")
		var out extest.Output
		if err := run(context.Background(), args, &out); err != nil {
			b.Fatal(err, out.String())
		}
		m := regexp.MustCompile(`backlog right after the burst: (\d+)`).FindStringSubmatch(out.String())
		w := regexp.MustCompile(`busiest 500ms window: (\d+) requests handled \(the throttle allows (\d+)\)`).FindStringSubmatch(out.String())
		if m == nil || w == nil {
			b.Fatalf("the demo did not report its backlog and windows:\n%s", out.String())
		}
		n, _ := strconv.Atoi(m[1])
		backlog += float64(n)
		n, _ = strconv.Atoi(w[1])
		busiest += float64(n)
		n, _ = strconv.Atoi(w[2])
		allowed = float64(n)
	}
	b.ReportMetric(backlog/float64(b.N), "backlog-after-burst")
	b.ReportMetric(busiest/float64(b.N), "busiest-window-handled")
	b.ReportMetric(allowed, "window-allowance")
}
