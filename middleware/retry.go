package middleware

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/rocketbus/rocketbus/router"
)

// MetadataRetryDelayLevel is the metadata key the rocketmq Subscriber reads, in its
// NackBrokerRetry mode, when a message is nacked: the delay level of the broker retry, or a
// negative value for "straight to the DLQ". It equals rocketmq.MetadataRetryDelayLevel; it is
// repeated here so that this package does not depend on the RocketMQ client.
const MetadataRetryDelayLevel = "rocketmq_retry_delay_level"

// Delay levels of RocketMQ 4.x (1 s, 5 s, 10 s, 30 s, 1 m ... 2 h).
const (
	MinDelayLevel = 1
	MaxDelayLevel = 18
	// DefaultMaxReconsumeTimes is RocketMQ's default number of broker retries before the DLQ.
	DefaultMaxReconsumeTimes = 16
)

// BrokerRetry turns a handler error into a RocketMQ broker retry instead of an in-process one:
// it sets MetadataRetryDelayLevel on the message, which the rocketmq Subscriber
// (NackMode: rocketmq.NackBrokerRetry) uses when the router nacks the message, so the broker
// redelivers it after the delay (through %RETRY%<group>) and moves it to %DLQ%<group> after
// MaxReconsumeTimes. Unlike Watermill's Retry, the consumer does not hold the message (or its
// queue) while waiting, and the retry survives a restart of the consumer.
//
// Use it instead of Watermill's Retry, not together with it.
type BrokerRetry struct {
	// ReconsumeTimes reads how many times the broker already redelivered the message; pass
	// rocketmq.ReconsumeTimesFromCtx. Required.
	ReconsumeTimes func(ctx context.Context) (int32, bool)

	// MaxReconsumeTimes: a message that failed after this many redeliveries goes to the DLQ.
	// Default DefaultMaxReconsumeTimes. Keep it at most the subscriber's MaxReconsumeTimes.
	MaxReconsumeTimes int32

	// DelayLevel returns the delay level (1..18) of the next retry; reconsumeTimes counts the
	// redeliveries so far (0 on the first failure). Default: 3 + reconsumeTimes (10 s, 30 s,
	// 1 m, 2 m, ...), the broker's own schedule. Values are clamped to 1..18.
	DelayLevel func(reconsumeTimes int32) int

	// ShouldRetry returns false for errors that can never succeed: those messages go to the DLQ
	// at once. Default: every error except Permanent ones and router decode errors.
	ShouldRetry func(err error) bool

	// Logger receives one line per message sent to the DLQ. Default: none.
	Logger watermill.LoggerAdapter
}

// Middleware returns the handler middleware. It fails when ReconsumeTimes is missing, because
// without it every message would be retried MaxReconsumeTimes times blindly.
func (b BrokerRetry) Middleware() (message.HandlerMiddleware, error) {
	if b.ReconsumeTimes == nil {
		return nil, errors.New("middleware: BrokerRetry.ReconsumeTimes is required (use rocketmq.ReconsumeTimesFromCtx)")
	}
	if b.MaxReconsumeTimes < 0 {
		return nil, fmt.Errorf("middleware: BrokerRetry.MaxReconsumeTimes %d is negative", b.MaxReconsumeTimes)
	}
	if b.MaxReconsumeTimes == 0 {
		b.MaxReconsumeTimes = DefaultMaxReconsumeTimes
	}
	if b.DelayLevel == nil {
		b.DelayLevel = func(n int32) int { return 3 + int(n) }
	}
	if b.ShouldRetry == nil {
		b.ShouldRetry = func(err error) bool { return !IsPermanent(err) && !router.IsDecodeError(err) }
	}
	if b.Logger == nil {
		b.Logger = watermill.NopLogger{}
	}
	return func(h message.HandlerFunc) message.HandlerFunc {
		return func(msg *message.Message) ([]*message.Message, error) {
			produced, err := h(msg)
			if err == nil {
				return produced, nil
			}
			n, _ := b.ReconsumeTimes(msg.Context())
			if !b.ShouldRetry(err) || n >= b.MaxReconsumeTimes {
				msg.Metadata.Set(MetadataRetryDelayLevel, "-1")
				b.Logger.Error("Sending message to the dead-letter queue", err, watermill.LogFields{
					"message_uuid": msg.UUID, "reconsume_times": n,
				})
				return produced, err
			}
			level := min(max(b.DelayLevel(n), MinDelayLevel), MaxDelayLevel)
			msg.Metadata.Set(MetadataRetryDelayLevel, strconv.Itoa(level))
			return produced, err
		}
	}, nil
}

type permanentError struct{ err error }

func (e permanentError) Error() string { return e.err.Error() }
func (e permanentError) Unwrap() error { return e.err }

// Permanent marks err as one that retrying cannot fix (invalid input, a rejected business
// rule): BrokerRetry sends the message to the DLQ at once, and IsPermanent lets Watermill's
// Retry (ShouldRetry) skip it. Permanent(nil) is nil.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return permanentError{err}
}

// IsPermanent reports whether err, or an error it wraps, was marked with Permanent.
func IsPermanent(err error) bool {
	var p permanentError
	return errors.As(err, &p)
}
