package rocketmq_test

import (
	"testing"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/stretchr/testify/assert"

	"github.com/rocketbus/rocketbus/rocketmq"
)

func TestClientLoggerFiltersAndMaps(t *testing.T) {
	capture := watermill.NewCaptureLogger()
	l := rocketmq.ClientLogger(capture, "warn")
	l.Debug("pull", nil)
	l.Info("rebalance", map[string]interface{}{"group": "g"})
	l.Warning("slow", map[string]interface{}{"group": "g"})
	l.Error("broken", map[string]interface{}{"group": "g"})

	got := capture.Captured()
	assert.Empty(t, got[watermill.DebugLogLevel])
	if assert.Len(t, got[watermill.InfoLogLevel], 1) {
		assert.Equal(t, "slow", got[watermill.InfoLogLevel][0].Msg)
		assert.Equal(t, "warning", got[watermill.InfoLogLevel][0].Fields["level"])
	}
	if assert.Len(t, got[watermill.ErrorLogLevel], 1) {
		assert.Equal(t, "broken", got[watermill.ErrorLogLevel][0].Msg)
		assert.Equal(t, "g", got[watermill.ErrorLogLevel][0].Fields["group"])
	}

	l.Level("debug")
	l.Debug("pull", nil)
	assert.Len(t, capture.Captured()[watermill.DebugLogLevel], 1)
}
