package rocketmq_test

import (
	"context"
	"fmt"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/rocketbus/rocketbus/rocketmq"
)

// Publishing to and consuming from a RocketMQ topic with plain Watermill types. Needs a broker
// (or `go run ./cmd/minirmq`) on 127.0.0.1:9876.
func ExampleNewPublisher() {
	logger := watermill.NewStdLogger(false, false)
	pub, err := rocketmq.NewPublisher(rocketmq.PublisherConfig{
		NameServers: []string{"127.0.0.1:9876"},
		// Orders of one user stay in one queue, so an orderly subscriber sees them in order.
		ShardingKeyFunc: func(_ string, msg *message.Message) string { return msg.Metadata.Get("user") },
	}, logger)
	if err != nil {
		panic(err)
	}
	defer pub.Close()

	msg := message.NewMessage(watermill.NewUUID(), []byte(`{"order":42}`))
	msg.Metadata.Set("user", "u-7")
	msg.Metadata.Set(rocketmq.MetadataTags, "created")
	msg.Metadata.Set(rocketmq.MetadataKeys, "order-42")
	if err := pub.Publish("orders", msg); err != nil {
		panic(err)
	}
}

func ExampleNewSubscriber() {
	logger := watermill.NewStdLogger(false, false)
	sub, err := rocketmq.NewSubscriber(rocketmq.SubscriberConfig{
		NameServers:     []string{"127.0.0.1:9876"},
		GroupFunc:       func(topic string) string { return "billing_" + topic },
		ConsumeFrom:     rocketmq.ConsumeFromFirst,
		TagFilter:       "created || paid",
		NackMode:        rocketmq.NackBrokerRetry, // failed messages go through %RETRY% and %DLQ%
		AutoCreateTopic: true,
		CloseTimeout:    10 * time.Second,
	}, logger)
	if err != nil {
		panic(err)
	}
	defer sub.Close()

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	msgs, err := sub.Subscribe(ctx, "orders")
	if err != nil {
		panic(err)
	}
	for msg := range msgs {
		id, _ := rocketmq.MsgIDFromCtx(msg.Context())
		retries, _ := rocketmq.ReconsumeTimesFromCtx(msg.Context())
		fmt.Println(id, retries, string(msg.Payload))
		msg.Ack()
	}
}

// A local transaction decides whether the message becomes visible; the broker asks
// CheckLocalTransaction when the outcome was lost.
func ExampleNewTransactionalPublisher() {
	orderSaved := func(uuid string) bool { return true } // look the order up in your database

	pub, err := rocketmq.NewTransactionalPublisher(rocketmq.TransactionalPublisherConfig{
		PublisherConfig: rocketmq.PublisherConfig{NameServers: []string{"127.0.0.1:9876"}, GroupName: "orders_tx"},
		CheckLocalTransaction: func(msg *message.Message) rocketmq.TransactionState {
			if orderSaved(msg.UUID) {
				return rocketmq.TransactionCommit
			}
			return rocketmq.TransactionRollback
		},
	}, watermill.NopLogger{})
	if err != nil {
		panic(err)
	}
	defer pub.Close()

	msg := message.NewMessage(watermill.NewUUID(), []byte(`{"order":42}`))
	_, err = pub.PublishInTransaction("orders", msg, func(msg *message.Message) rocketmq.TransactionState {
		// INSERT the order in the same database transaction as an outbox row keyed by msg.UUID.
		return rocketmq.TransactionCommit
	})
	if err != nil {
		panic(err)
	}
}
