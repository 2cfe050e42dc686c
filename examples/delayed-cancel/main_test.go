package main

import (
	"context"
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/rocketbus/rocketbus/examples/internal/extest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, extest.LeakOptions()...)
}

func TestDelayedCancel(t *testing.T) {
	extest.SkipUnderRace(t)
	args := extest.BrokerArgs(t)
	if extest.External() {
		args = append(args, "-pay-within", "1s") // the smallest delay level, unscaled on a real broker
	}
	var out extest.Output
	require.NoError(t, run(context.Background(), args, &out), out.String())
	t.Log("\n" + out.String())

	for i := 1; i <= 6; i++ {
		lines := out.Lines(fmt.Sprintf("order o-%d: deadline reached", i))
		require.Len(t, lines, 1, "one deadline per order")
		if i%3 == 0 {
			assert.Contains(t, lines[0], "paid -> kept", "a paid order is not cancelled")
		} else {
			assert.Contains(t, lines[0], "still unpaid -> cancelled")
		}
	}
	assert.Len(t, out.Lines("done: 4 cancelled, 2 paid, 0 unpaid"), 1)
	if !extest.External() {
		// The deadlines went through the broker's delay queue rather than straight to the topic.
		assert.Len(t, out.Lines("the broker holds 6 deadline messages in SCHEDULE_TOPIC_XXXX"), 1)
	}
}
