package main

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/rocketbus/rocketbus/examples/internal/extest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, extest.LeakOptions()...)
}

func TestQuickstart(t *testing.T) {
	extest.SkipUnderRace(t)
	var out extest.Output
	require.NoError(t, run(context.Background(), extest.BrokerArgs(t), &out), out.String())
	t.Log("\n" + out.String())

	handled := out.Lines("handled order")
	require.Len(t, handled, 1, "the order is handled exactly once")
	assert.Contains(t, handled[0], `handled order 1001 (total 4200, tag "paid"`)
	assert.NotEmpty(t, out.Lines("done"))
}

func TestQuickstartBadFlag(t *testing.T) {
	var out extest.Output
	err := run(context.Background(), []string{"-nope"}, &out)
	require.Error(t, err)
	assert.Contains(t, out.String(), "-namesrv", "the usage names the broker flag")
}
