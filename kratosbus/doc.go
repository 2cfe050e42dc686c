// Package kratosbus runs message handlers as a Kratos transport server and gives the data
// layer a publisher, with RocketMQ as the default backend and any Watermill backend as an
// alternative.
//
// Server side (server package of a Kratos service):
//
//	srv, err := kratosbus.NewServer(
//		kratosbus.WithNameServer("127.0.0.1:9876"),
//		kratosbus.WithCodec("json"),
//		kratosbus.WithGlobalTracerProvider(),
//		kratosbus.WithGlobalPropagator(),
//		kratosbus.WithMiddleware(recovery.Recovery(), logging.Server(logger), metadata.Server()),
//	)
//	err = kratosbus.RegisterSubscriber(srv, "orders", "order-store",
//		func(ctx context.Context, topic string, headers kratosbus.Headers, o *v1.Order) error {
//			return uc.Store(ctx, o)
//		})
//	app := kratos.New(kratos.Server(httpSrv, srv))
//
// Start blocks until Stop; Stop drains in-flight handlers within its context (the app's stop
// timeout). Handlers run inside the Kratos middleware chain with a Transport of kind
// "rocketmq" whose request header is the message metadata, so Kratos' recovery, logging,
// tracing and metadata middleware work unchanged. Each message is also traced (consumer span
// with the messaging semantic conventions, continuing the producer's W3C trace context), and a
// handler error becomes a RocketMQ broker retry with a delay level, then the DLQ
// (WithBrokerRetry, WithoutBrokerRetry). Undecodable payloads go to the poison topic.
//
// Data side: NewPublisher (or ProviderSet with wire) returns a Publisher whose
// Publish(ctx, topic, v) encodes v and carries the trace context and Kratos metadata of ctx.
//
// Tests swap RocketMQ for any Watermill backend with WithBackend, for example gochannel.
package kratosbus
