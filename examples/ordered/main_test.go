package main

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/rocketbus/rocketbus/examples/internal/extest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, extest.LeakOptions()...)
}

func TestOrdered(t *testing.T) {
	extest.SkipUnderRace(t)
	const orders = 12
	var out extest.Output
	require.NoError(t, run(context.Background(), append(extest.BrokerArgs(t), "-orders", fmt.Sprint(orders)), &out), out.String())
	t.Log("\n" + out.String())

	want := strings.Join(statuses, " -> ")
	queues := map[string]bool{}
	line := regexp.MustCompile(`^order (o-\d+): (.*) \(queue ([\d,]+)\)$`)
	for i := 1; i <= orders; i++ {
		lines := out.Lines(fmt.Sprintf("order o-%d: ", i))
		require.Len(t, lines, 1)
		m := line.FindStringSubmatch(lines[0])
		require.NotNil(t, m, lines[0])
		assert.Equal(t, want, m[2], "order o-%d saw its statuses in sequence, each once", i)
		assert.NotContains(t, m[3], ",", "all events of order o-%d came from one queue", i)
		queues[m[3]] = true
	}
	assert.Greater(t, len(queues), 1, "different orders are spread over several queues (processed in parallel)")
	assert.Empty(t, out.Lines("OUT OF ORDER"))
	assert.Len(t, out.Lines(fmt.Sprintf("done: %d events", orders*len(statuses))), 1)
}
