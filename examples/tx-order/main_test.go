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

func TestTxOrder(t *testing.T) {
	extest.SkipUnderRace(t)
	if extest.External() && testing.Short() {
		t.Skip("a real broker checks back after 6 s, then every 60 s")
	}
	var out extest.Output
	require.NoError(t, run(context.Background(), extest.BrokerArgs(t), &out), out.String())
	t.Log("\n" + out.String())

	assert.Len(t, out.Lines("order o-1: message commit"), 1)
	assert.Len(t, out.Lines("order o-2: message rollback"), 1)
	assert.Len(t, out.Lines("order o-3: process crashed after the database commit"), 1)
	assert.Len(t, out.Lines("order o-4: process crashed before the database commit"), 1)

	// The broker asked about the two unknown outcomes; the database decided them.
	assert.NotEmpty(t, out.Lines("check-back: order o-3 row exists=true -> commit"))
	assert.NotEmpty(t, out.Lines("check-back: order o-4 row exists=false -> rollback"))
	assert.Empty(t, out.Lines("check-back: order o-1"), "a committed transaction is not checked")
	assert.Empty(t, out.Lines("check-back: order o-2"), "a rolled-back transaction is not checked")

	// Delivered exactly when the row exists.
	assert.Len(t, out.Lines("shipping: received order o-1"), 1)
	assert.Len(t, out.Lines("shipping: received order o-3"), 1)
	assert.Empty(t, out.Lines("shipping: received order o-2"))
	assert.Empty(t, out.Lines("shipping: received order o-4"))
	assert.Len(t, out.Lines("consistent: orders in the database [o-1 o-3], orders delivered [o-1 o-3]"), 1)
}
