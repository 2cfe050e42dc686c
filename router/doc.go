// Package router offers typed message handlers and codecs over any Watermill Publisher and
// Subscriber; RocketMQ is one backend among others and is not special-cased.
//
//	r, _ := router.New(router.Config{Publisher: pub, NewSubscriber: newSubscriberForGroup})
//	router.Subscribe(r, "orders", func(ctx context.Context, o *Order) error { ... },
//		router.WithGroup("billing"))
//	router.Handle(r, "orders", "receipts", func(ctx context.Context, o *Order) ([]*Receipt, error) { ... })
//	go r.Run(ctx)
//
// A handler's context carries the message (MessageFromContext, Metadata) and its Subscription.
// Payloads are decoded with a Codec (JSON by default, Protobuf, or any Kratos codec); a payload
// that cannot be decoded goes to the poison topic (through Config.Publisher) with the error in
// its metadata, and is never retried, not even by a Retry in a handler's own middleware; a
// router without a Publisher must opt in to dropping such payloads (Config.DropUndecodable).
// Watermill's own middleware (Retry, PoisonQueue, CorrelationID, Recoverer, Timeout,
// Throttle) plugs in through Config.Middleware. Shutdown(ctx) lets in-flight handlers finish
// while ctx lasts.
package router
