package main

import (
	"context"
	"fmt"
	"regexp"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/rocketbus/rocketbus/examples/internal/extest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, extest.LeakOptions()...)
}

var correlationRe = regexp.MustCompile(`\[correlation (\S*)\]$`)

func TestOrders(t *testing.T) {
	extest.SkipUnderRace(t)
	var out extest.Output
	require.NoError(t, run(context.Background(), extest.BrokerArgs(t), &out), out.String())
	t.Log("\n" + out.String())

	// Every service saw every order exactly once, with the correlation id of the request that
	// placed it.
	for i, o := range orders {
		want := fmt.Sprintf("req-%d", 101+i)
		for _, service := range []string{"points:", "coupons:", "ledger:"} {
			var lines []string
			for _, l := range out.Lines(service) {
				if regexp.MustCompile(`order ` + o.ID + `\b`).MatchString(l) {
					lines = append(lines, l)
				}
			}
			require.Len(t, lines, 1, "%s handled order %s once", service, o.ID)
			assert.Equal(t, want, correlationRe.FindStringSubmatch(lines[0])[1], lines[0])
		}
	}
	assert.Len(t, out.Lines("coupon issued"), 3, "orders of 100.00 or more get a coupon")
	assert.Len(t, out.Lines("mail sent"), len(orders)-1)

	// The bad address was tried 1+maxRetries times, then poisoned, once.
	assert.Len(t, out.Lines("cannot mail"), maxRetries+1)
	assert.Empty(t, regexp.MustCompile(`mail sent to not-an-address`).FindString(out.String()))
	poisoned := out.Lines("poison queue:")
	require.Len(t, poisoned, 1)
	assert.Contains(t, poisoned[0], "order o-4 from handler")
	assert.Contains(t, poisoned[0], "invalid email address not-an-address")
	assert.Equal(t, "req-104", correlationRe.FindStringSubmatch(poisoned[0])[1])
	assert.Len(t, out.Lines("done: points 5, coupons 5, notifications 4, ledger 5, poisoned 1"), 1)
}
