// Package middleware holds the Watermill handler middleware that Watermill itself lacks:
// OpenTelemetry trace propagation through message metadata (Tracing, TracingPublisher),
// RocketMQ-native retries with delay levels and a dead-letter queue (BrokerRetry), and the
// bridge between Kratos metadata ("x-md-" keys) and message metadata (KratosMetadata,
// KratosMetadataPublisher).
//
// It does not repeat what Watermill ships: use Watermill's Retry, PoisonQueue, CorrelationID,
// Recoverer, Timeout and Throttle (github.com/ThreeDotsLabs/watermill/message/router/middleware)
// alongside it, for example in router.Config.Middleware. A typical chain, outermost first:
//
//	Recoverer, Tracing, CorrelationID, Timeout, BrokerRetry (or Watermill's Retry)
//
// The package does not import the RocketMQ client: RocketMQ specifics (message ids, reconsume
// counts) are read through functions the caller passes, such as rocketmq.MsgIDFromCtx and
// rocketmq.ReconsumeTimesFromCtx.
package middleware
