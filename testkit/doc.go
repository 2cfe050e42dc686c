// Package testkit runs one test against every Watermill backend rocketbus supports, so that code
// written over message.Publisher and message.Subscriber is proven on RocketMQ and on the brokers
// users compare it with.
//
// A Backend hands out publishers, fan-out subscribers and consumer-group subscribers for one
// test, plus topic names valid on that broker; everything it creates is closed through
// t.Cleanup. Each runs a test (or a benchmark) once per backend:
//
//	func TestOrders(t *testing.T) {
//		testkit.Each(t, func(t *testing.T, b testkit.Backend) {
//			topic := b.Topic(t)
//			pub, sub := b.Publisher(t), b.GroupSubscriber(t, "orders")
//			...
//		})
//	}
//
// Backends and where their servers come from:
//
//	gochannel  in process (watermill's GoChannel; consumer groups emulated in process)
//	rocketmq   minirmq in process; $ROCKETMQ_NAMESRV when set; a container when
//	           ROCKETMQ_TESTKIT=container ($ROCKETMQ_IMAGE, default a local minirmq image);
//	           skipped under -race unless ROCKETBUS_RACE_BROKER_TESTS=1 (see RocketMQ)
//	nats       an embedded nats-server with JetStream (watermill-nats/v2)
//	redis      Redis streams at $REDIS_ADDR (default 127.0.0.1:6379, watermill-redisstream)
//	postgres   PostgreSQL at $POSTGRES_DSN (default
//	           postgres://rocketbus:rocketbus@127.0.0.1:5432/rocketbus?sslmode=disable, watermill-sql)
//	rabbitmq   RabbitMQ at $AMQP_URI (default amqp://guest:guest@127.0.0.1:5672/, watermill-amqp)
//
// A backend whose server does not answer skips the test with a message naming the address it
// tried, except when CI=true: then it fails, so CI cannot go green by skipping. scripts/
// test-services.sh (run by `make test`) installs and starts Redis, PostgreSQL and RabbitMQ.
// TESTKIT_BACKENDS=rocketmq,nats limits a run to the named backends; TESTKIT_LOG=debug shows
// the Watermill adapters' logs (otherwise only their errors).
//
// Semantics every backend provides (and the package tests check):
//   - A subscription receives every message published after its Subscribe call returned.
//   - Subscriber: each subscriber gets its own copy of every message (fan-out).
//   - GroupSubscriber: subscribers sharing a group name compete; each message goes to one member
//     (at least once: a rebalance may deliver a message twice). Different groups each get
//     every message.
//   - A nacked message is delivered again, with its UUID, payload and metadata.
//   - On the persistent backends (all but gochannel) a group outlives its members: messages
//     published while it has none wait for it, and a new member continues where the group
//     stopped.
//
// Where the brokers differ, Features reports it; the differences worth knowing:
//   - Messages published before any subscriber existed: kept for later subscribers by
//     rocketmq, nats, postgres and (for consumer groups) redis; dropped by gochannel, by rabbitmq
//     until a group's queue exists, and by redis fan-out subscribers, which start at the end of
//     the stream.
//   - Messages a departed group member took but never acked reach another member at once on
//     rocketmq (uncommitted offsets), rabbitmq (requeued) and postgres, and after 5s on nats
//     (ack wait) and redis (claim of idle pending entries); a handler running longer than 5s
//     may therefore see its message twice on those two.
//   - Publish returns once the server has the message: a RocketMQ sync send, a JetStream
//     publish ack, a Redis XADD, a committed PostgreSQL insert, a RabbitMQ publisher confirm
//     (enabled here; watermill-amqp's default does not wait for one).
package testkit
