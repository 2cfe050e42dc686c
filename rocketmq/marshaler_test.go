package rocketmq_test

import (
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/apache/rocketmq-client-go/v2/primitive"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rocketbus/rocketbus/rocketmq"
)

// roundTrip marshals msg and decodes it as a consumer would see it after the broker stored it.
func roundTrip(t *testing.T, m rocketmq.Marshaler, msg *message.Message) (*primitive.Message, *message.Message) {
	t.Helper()
	out, err := m.Marshal("orders", msg)
	require.NoError(t, err)
	ext := &primitive.MessageExt{Message: primitive.Message{Topic: out.Topic, Body: out.Body}, MsgId: "MSGID"}
	ext.UnmarshalProperties([]byte(out.MarshallProperties()))
	ext.WithProperty("UNIQ_KEY", "MSGID")
	ext.WithProperty("MIN_OFFSET", "0")
	back, err := m.Unmarshal(ext)
	require.NoError(t, err)
	return out, back
}

func TestDefaultMarshalerRoundTrip(t *testing.T) {
	msg := message.NewMessage("0b5e7a3c-uuid", []byte("payload\x00\x01binary"))
	msg.Metadata.Set("trace", "abc")
	msg.Metadata.Set("correlation_id", "c-1")
	msg.Metadata.Set(rocketmq.MetadataTags, "created")
	msg.Metadata.Set(rocketmq.MetadataKeys, "order-1 order-2")
	msg.Metadata.Set(rocketmq.MetadataShardingKey, "user-7")

	out, back := roundTrip(t, rocketmq.DefaultMarshaler{}, msg)
	assert.Equal(t, "created", out.GetTags())
	assert.Equal(t, "order-1 order-2", out.GetKeys())
	assert.Equal(t, "user-7", out.GetShardingKey())
	assert.Empty(t, out.GetProperty(primitive.PropertyDelayTimeLevel))

	assert.Equal(t, msg.UUID, back.UUID)
	assert.Equal(t, msg.Payload, back.Payload)
	assert.Equal(t, msg.Metadata, back.Metadata, "all metadata must survive, system properties must not leak in")
}

func TestDefaultMarshalerUUIDFallsBackToMsgID(t *testing.T) {
	ext := &primitive.MessageExt{Message: primitive.Message{Topic: "t", Body: []byte("x")}, MsgId: "7F0000010001"}
	ext.WithProperty("color", "red")
	msg, err := rocketmq.DefaultMarshaler{}.Unmarshal(ext)
	require.NoError(t, err)
	assert.Equal(t, "7F0000010001", msg.UUID)
	assert.Equal(t, "red", msg.Metadata.Get("color"))
}

func TestDefaultMarshalerRejectsBadMetadata(t *testing.T) {
	cases := map[string]func(*message.Message){
		"key with \\u0001":   func(m *message.Message) { m.Metadata.Set("a\u0001b", "v") },
		"key with \\u0002":   func(m *message.Message) { m.Metadata.Set("a\u0002b", "v") },
		"value with \\u0002": func(m *message.Message) { m.Metadata.Set("a", "v\u0002") },
		"system property":    func(m *message.Message) { m.Metadata.Set("DELAY", "3") },
		"tag with space":     func(m *message.Message) { m.Metadata.Set(rocketmq.MetadataTags, "a b") },
		"bad delay level":    func(m *message.Message) { m.Metadata.Set(rocketmq.MetadataDelayLevel, "soon") },
		"bad delayed_until":  func(m *message.Message) { m.Metadata.Set("_watermill_delayed_until", "tomorrow") },
		"bad delayed_for":    func(m *message.Message) { m.Metadata.Set("_watermill_delayed_for", "5 parsecs") },
	}
	for name, mutate := range cases {
		t.Run(name, func(t *testing.T) {
			msg := message.NewMessage("id", []byte("x"))
			mutate(msg)
			_, err := rocketmq.DefaultMarshaler{}.Marshal("t", msg)
			require.Error(t, err)
			assert.True(t, errors.Is(err, rocketmq.ErrInvalidMetadata), "%v", err)
		})
	}
}

func TestDelayLevelFor(t *testing.T) {
	cases := []struct {
		d     time.Duration
		level int
	}{
		{0, 0}, {-time.Second, 0}, {time.Millisecond, 1}, {time.Second, 1}, {1001 * time.Millisecond, 2},
		{5 * time.Second, 2}, {6 * time.Second, 3}, {45 * time.Second, 5}, {90 * time.Second, 6},
		{11 * time.Minute, 15}, {time.Hour, 17}, {61 * time.Minute, 18}, {2 * time.Hour, 18}, {48 * time.Hour, 18},
	}
	for _, c := range cases {
		assert.Equal(t, c.level, rocketmq.DelayLevelFor(c.d), "delay %s", c.d)
		if c.level > 0 && c.d <= 2*time.Hour {
			assert.GreaterOrEqual(t, rocketmq.DelayLevels[c.level-1], c.d, "level must never deliver early")
		}
	}
}

func TestDefaultMarshalerWatermillDelay(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	m := rocketmq.DefaultMarshaler{Now: func() time.Time { return now }}

	msg := message.NewMessage("id", nil)
	msg.Metadata.Set("_watermill_delayed_for", "40s")
	out, err := m.Marshal("t", msg)
	require.NoError(t, err)
	assert.Equal(t, "5", out.GetProperty(primitive.PropertyDelayTimeLevel), "40s rounds up to 1m")

	msg = message.NewMessage("id", nil)
	msg.Metadata.Set("_watermill_delayed_until", now.Add(3*time.Second).Format(time.RFC3339))
	out, err = m.Marshal("t", msg)
	require.NoError(t, err)
	assert.Equal(t, "2", out.GetProperty(primitive.PropertyDelayTimeLevel))

	msg = message.NewMessage("id", nil)
	msg.Metadata.Set("_watermill_delayed_until", now.Add(-time.Minute).Format(time.RFC3339))
	out, err = m.Marshal("t", msg)
	require.NoError(t, err)
	assert.Empty(t, out.GetProperty(primitive.PropertyDelayTimeLevel), "a past time means no delay")

	msg = message.NewMessage("id", nil)
	msg.Metadata.Set(rocketmq.MetadataDelayLevel, "30")
	out, err = m.Marshal("t", msg)
	require.NoError(t, err)
	assert.Equal(t, "18", out.GetProperty(primitive.PropertyDelayTimeLevel))

	// The delay component writes both keys; _until is truncated to whole seconds.
	msg = message.NewMessage("id", nil)
	msg.Metadata.Set("_watermill_delayed_for", "2.5s")
	msg.Metadata.Set("_watermill_delayed_until", now.Add(2500*time.Millisecond).Format(time.RFC3339))
	m.DeliveryTimeDelay = true
	out, err = m.Marshal("t", msg)
	require.NoError(t, err)
	assert.Equal(t, strconv.FormatInt(now.Add(2500*time.Millisecond).UnixMilli(), 10), out.GetProperty("TIMER_DELIVER_MS"), "the precise time, not the truncated one")

	// Republished a minute later: the absolute time has passed, no new delay.
	later := rocketmq.DefaultMarshaler{Now: func() time.Time { return now.Add(time.Minute) }, DeliveryTimeDelay: true}
	out, err = later.Marshal("t", msg)
	require.NoError(t, err)
	assert.Empty(t, out.GetProperty("TIMER_DELIVER_MS"))

	msg = message.NewMessage("id", nil)
	msg.Metadata.Set("_watermill_delayed_for", "90m")
	out, err = m.Marshal("t", msg)
	require.NoError(t, err)
	assert.Empty(t, out.GetProperty(primitive.PropertyDelayTimeLevel))
	assert.Equal(t, strconv.FormatInt(now.Add(90*time.Minute).UnixMilli(), 10), out.GetProperty("TIMER_DELIVER_MS"))
	assert.False(t, strings.Contains(out.MarshallProperties(), "DELAY\u0001"))
}
