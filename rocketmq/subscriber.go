package rocketmq

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	rmq "github.com/apache/rocketmq-client-go/v2"
	"github.com/apache/rocketmq-client-go/v2/consumer"
	"github.com/apache/rocketmq-client-go/v2/primitive"
)

// ErrSubscriberClosed is returned by Subscribe and SubscribeInitialize after Close.
var ErrSubscriberClosed = errors.New("rocketmq: subscriber is closed")

// topicSetupTimeout bounds topic creation (including waiting for the route to appear).
const topicSetupTimeout = 30 * time.Second

// Subscriber consumes RocketMQ topics as Watermill message channels. Every Subscribe call starts
// its own push consumer (with its own client instance) in the group GroupFunc(topic).
type Subscriber struct {
	config SubscriberConfig
	logger watermill.LoggerAdapter

	mu      sync.Mutex
	closed  bool
	closing chan struct{}
	subs    sync.WaitGroup

	topicsMu sync.Mutex
	topics   *topicCreator
}

// NewSubscriber validates config and returns a Subscriber. It does not connect yet.
func NewSubscriber(config SubscriberConfig, logger watermill.LoggerAdapter) (*Subscriber, error) {
	config.setDefaults()
	if err := config.Validate(); err != nil {
		return nil, err
	}
	if logger == nil {
		logger = watermill.NopLogger{}
	}
	return &Subscriber{
		config:  config,
		logger:  logger,
		closing: make(chan struct{}),
		topics: &topicCreator{
			nameServers: config.NameServers,
			namespace:   config.Namespace,
			credentials: config.Credentials,
			brokers:     config.BrokerAddrs,
			queueNums:   config.TopicQueueNums,
		},
	}, nil
}

// SubscribeInitialize creates topic through the admin API if it has no route yet. It implements
// message.SubscribeInitializer.
func (s *Subscriber) SubscribeInitialize(topic string) error {
	if err := validateName("topic", topic); err != nil {
		return err
	}
	if s.isClosed() {
		return ErrSubscriberClosed
	}
	ctx, cancel := context.WithTimeout(context.Background(), topicSetupTimeout)
	defer cancel()
	return s.ensureTopic(ctx, topic)
}

func (s *Subscriber) ensureTopic(ctx context.Context, topic string) error {
	s.topicsMu.Lock()
	defer s.topicsMu.Unlock()
	return s.topics.ensure(ctx, topic)
}

func (s *Subscriber) ensureRetryTopic(ctx context.Context, group string) error {
	full := group
	if s.config.Namespace != "" {
		full = s.config.Namespace + "%" + group
	}
	s.topicsMu.Lock()
	defer s.topicsMu.Unlock()
	return s.topics.ensureFull(ctx, "%RETRY%"+full, 1)
}

func (s *Subscriber) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// Subscribe starts a push consumer for topic and returns its messages. The channel is closed
// when ctx is done or the Subscriber is closed, after handlers of delivered messages finished
// (up to CloseTimeout).
func (s *Subscriber) Subscribe(ctx context.Context, topic string) (<-chan *message.Message, error) {
	if ctx == nil {
		return nil, errors.New("rocketmq: nil context")
	}
	if s.isClosed() {
		return nil, ErrSubscriberClosed
	}
	if err := validateName("topic", topic); err != nil {
		return nil, err
	}
	group := s.config.GroupFunc(topic)
	if err := validateName("consumer group", group); err != nil {
		return nil, fmt.Errorf("%w (from GroupFunc(%q))", err, topic)
	}
	if s.config.AutoCreateTopic {
		setupCtx, cancel := context.WithTimeout(ctx, topicSetupTimeout)
		err := s.ensureTopic(setupCtx, topic)
		if err == nil && s.config.NackMode == NackBrokerRetry && !s.config.Orderly && s.config.Model == Clustering {
			// The broker creates %RETRY%<group> on the group's first heartbeat, after the
			// consumer looked up its routes, so the consumer would pick up retried messages
			// only at its next route refresh (up to 30 s later). Creating it first avoids that.
			err = s.ensureRetryTopic(setupCtx, group)
		}
		cancel()
		if err != nil {
			return nil, err
		}
	}

	baseCtx, cancelBase := context.WithCancel(ctx)
	sub := &subscription{
		s:           s,
		ctx:         ctx,
		baseCtx:     baseCtx,
		cancelBase:  cancelBase,
		topic:       topic,
		group:       group,
		out:         make(chan *message.Message),
		stopDeliver: make(chan struct{}),
		abort:       make(chan struct{}),
		released:    make(chan struct{}),
	}
	sub.instanceName = s.config.InstanceName + "-" + watermill.NewShortUUID()
	opts := s.consumerOptions(group, sub.instanceName)
	var releaser *queueReleaser
	allocate := withoutClosedConsumers(consumer.AllocateByAveragely)
	if s.config.Orderly && s.config.Model == Clustering {
		r := &queueReleaser{nameServers: s.config.NameServers, group: group, credentials: s.config.Credentials,
			kick: make(chan struct{}, 1)}
		releaser = r
		if s.config.Namespace != "" {
			r.group = s.config.Namespace + "%" + group
		}
		allocate = r.strategy(allocate)
	}
	opts = append(opts, consumer.WithStrategy(allocate))
	pc, err := consumer.NewPushConsumer(opts...)
	if err != nil {
		cancelBase()
		return nil, fmt.Errorf("rocketmq: create consumer for %q: %w", topic, err)
	}
	sub.consumer = pc
	if err := pc.Subscribe(topic, s.selector(), sub.consume); err != nil {
		cancelBase()
		_ = pc.Shutdown()
		return nil, fmt.Errorf("rocketmq: subscribe to %q: %w", topic, err)
	}
	if err := pc.Start(); err != nil {
		cancelBase()
		_ = pc.Shutdown()
		return nil, fmt.Errorf("rocketmq: start consumer of %q in group %q (does the topic exist? see AutoCreateTopic): %w", topic, group, err)
	}

	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		cancelBase()
		_ = pc.Shutdown()
		return nil, ErrSubscriberClosed
	}
	s.subs.Add(1)
	s.mu.Unlock()

	sub.releaser = releaser
	if releaser != nil {
		sub.helpers.Add(1)
		go func() {
			defer sub.helpers.Done()
			releaser.settleLoop(pc.Rebalance, sub.stopDeliver)
		}()
	}
	go sub.run()
	s.logger.Debug("Subscribed", watermill.LogFields{"topic": topic, "group": group})
	return sub.out, nil
}

func (s *Subscriber) consumerOptions(group, instanceName string) []consumer.Option {
	c := s.config
	model := consumer.Clustering
	if c.Model == Broadcasting {
		model = consumer.BroadCasting
	}
	from := consumer.ConsumeFromLastOffset
	switch c.ConsumeFrom {
	case ConsumeFromFirst:
		from = consumer.ConsumeFromFirstOffset
	case ConsumeFromTimestamp:
		from = consumer.ConsumeFromTimestamp
	}
	opts := []consumer.Option{
		consumer.WithNameServer(c.NameServers),
		consumer.WithGroupName(group),
		consumer.WithInstance(instanceName),
		consumer.WithConsumerModel(model),
		consumer.WithConsumeFromWhere(from),
		consumer.WithConsumerOrder(c.Orderly),
		consumer.WithConsumeGoroutineNums(c.ConsumeGoroutines),
		consumer.WithPullBatchSize(c.PullBatchSize),
		consumer.WithConsumeMessageBatchMaxSize(s.callbackBatchSize()),
	}
	if c.ConsumeFrom == ConsumeFromTimestamp {
		opts = append(opts, consumer.WithConsumeTimestamp(c.ConsumeTimestamp.Format("20060102150405")))
	}
	if c.MaxReconsumeTimes > 0 {
		opts = append(opts, consumer.WithMaxReconsumeTimes(c.MaxReconsumeTimes))
	}
	if c.Namespace != "" {
		opts = append(opts, consumer.WithNamespace(c.Namespace))
	}
	if !c.Credentials.IsEmpty() {
		opts = append(opts, consumer.WithCredentials(c.Credentials))
	}
	return opts
}

// callbackBatchSize is how many messages one client callback carries. The client can only
// retry or commit a callback's messages together, so broker retries and orderly mode need one
// message per callback (see SubscriberConfig.ConsumeBatchSize).
func (s *Subscriber) callbackBatchSize() int {
	if s.config.NackMode == NackRedeliverLocally && !s.config.Orderly {
		return s.config.ConsumeBatchSize
	}
	return 1
}

func (s *Subscriber) selector() consumer.MessageSelector {
	if s.config.SQLFilter != "" {
		return consumer.MessageSelector{Type: consumer.SQL92, Expression: s.config.SQLFilter}
	}
	return consumer.MessageSelector{Type: consumer.TAG, Expression: s.config.TagFilter}
}

// Close stops every subscription: no new deliveries, handlers of delivered messages get up to
// CloseTimeout to Ack or Nack, then the consumers shut down (committing the offsets of acked
// messages; unacked ones are delivered again later) and the channels close. It is idempotent.
func (s *Subscriber) Close() error {
	s.mu.Lock()
	first := !s.closed
	if first {
		s.closed = true
		close(s.closing)
	}
	s.mu.Unlock()

	// Every caller waits, so that Close returning always means the channels are closed.
	s.subs.Wait()
	if !first {
		return nil
	}
	s.topicsMu.Lock()
	defer s.topicsMu.Unlock()
	return s.topics.close()
}

type outcome int

const (
	outcomeAck outcome = iota
	outcomeNack
	outcomeAbort
)

// subscription is one Subscribe call: one push consumer and one output channel.
type subscription struct {
	s   *Subscriber
	ctx context.Context
	// baseCtx is the parent of every message context; it is cancelled when the subscription
	// starts stopping so that handlers learn about the shutdown (as with other Watermill
	// Pub/Subs) while Close still waits for their Ack or Nack.
	baseCtx    context.Context
	cancelBase context.CancelFunc
	topic      string
	group      string
	consumer   rmq.PushConsumer
	// instanceName makes the consumer's client id (ClientIP@instanceName) unique.
	instanceName string
	out          chan *message.Message

	// stopDeliver closes when the subscription starts stopping: nothing new goes to out.
	stopDeliver chan struct{}
	// abort closes when the wait for handlers of delivered messages is over.
	abort chan struct{}
	// released closes after the consumer shut down; callbacks held back until then return a
	// result the client can no longer act on, so no message is acked or sent back by mistake.
	released chan struct{}

	// helpers are goroutines that use the consumer; they end before it shuts down.
	helpers sync.WaitGroup
	// releaser manages broker queue locks in orderly clustering mode (nil otherwise).
	releaser *queueReleaser

	mu           sync.Mutex
	stopping     bool
	finished     bool
	inflight     int // messages handed to out and not yet acked or nacked
	active       int // callbacks running
	inflightZero chan struct{}
	activeZero   chan struct{}
}

func (sub *subscription) run() {
	defer sub.s.subs.Done()
	select {
	case <-sub.ctx.Done():
	case <-sub.s.closing:
	}
	sub.stop()
}

func (sub *subscription) stop() {
	logFields := watermill.LogFields{"topic": sub.topic, "group": sub.group}

	sub.mu.Lock()
	sub.stopping = true
	close(sub.stopDeliver)
	sub.cancelBase()
	sub.inflightZero = make(chan struct{})
	if sub.inflight == 0 {
		close(sub.inflightZero)
	}
	sub.mu.Unlock()

	timer := time.NewTimer(sub.s.config.CloseTimeout)
	select {
	case <-sub.inflightZero:
	case <-timer.C:
		sub.s.logger.Info("Close timeout reached with unacknowledged messages; they will be delivered again", logFields)
	}
	timer.Stop()
	close(sub.abort)
	sub.helpers.Wait()

	if err := sub.consumer.Shutdown(); err != nil {
		sub.s.logger.Error("Consumer shutdown failed", err, logFields)
	}
	closedConsumers.add(sub.instanceName)
	if sub.releaser != nil {
		sub.releaser.releaseAll()
	}
	close(sub.released)

	sub.mu.Lock()
	sub.finished = true
	sub.activeZero = make(chan struct{})
	if sub.active == 0 {
		close(sub.activeZero)
	}
	sub.mu.Unlock()
	<-sub.activeZero

	close(sub.out)
	sub.s.logger.Debug("Subscription closed", logFields)
}

// failResult is what a callback returns when the message was not handled; after the consumer
// shut down the client ignores it (the queue is dropped) and the message stays unconsumed.
func (sub *subscription) failResult() consumer.ConsumeResult {
	if sub.s.config.Orderly {
		return consumer.SuspendCurrentQueueAMoment
	}
	return consumer.ConsumeRetryLater
}

func (sub *subscription) enter() (ok bool) {
	sub.mu.Lock()
	defer sub.mu.Unlock()
	if sub.finished {
		return false
	}
	sub.active++
	return true
}

func (sub *subscription) leave() {
	sub.mu.Lock()
	defer sub.mu.Unlock()
	sub.active--
	if sub.finished && sub.active == 0 {
		close(sub.activeZero)
	}
}

// startDelivery counts a message as in flight unless the subscription is stopping.
func (sub *subscription) startDelivery() bool {
	sub.mu.Lock()
	defer sub.mu.Unlock()
	if sub.stopping {
		return false
	}
	sub.inflight++
	return true
}

func (sub *subscription) endDelivery() {
	sub.mu.Lock()
	defer sub.mu.Unlock()
	sub.inflight--
	if sub.stopping && sub.inflight == 0 {
		close(sub.inflightZero)
	}
}

// consume is the push consumer callback. It runs on the client's goroutines, one message per call.
func (sub *subscription) consume(ctx context.Context, msgs ...*primitive.MessageExt) (consumer.ConsumeResult, error) {
	if !sub.enter() {
		return sub.failResult(), nil
	}
	defer sub.leave()

	for _, ext := range msgs {
		res, retryLevel := sub.handle(ext)
		switch res {
		case outcomeAck:
			continue
		case outcomeAbort:
			<-sub.released
			return sub.failResult(), nil
		case outcomeNack:
			if sub.s.config.Orderly {
				if octx, ok := primitive.GetOrderlyCtx(ctx); ok {
					octx.SuspendCurrentQueueTimeMillis = int(sub.s.config.NackResendSleep / time.Millisecond)
				}
				if limit := sub.s.config.MaxReconsumeTimes; retryLevel < 0 && limit > 0 {
					// The orderly client dead-letters a message once its reconsume times
					// exceed the maximum; that is the only way to ask it for the DLQ.
					ext.ReconsumeTimes = limit + 1
				}
				return consumer.SuspendCurrentQueueAMoment, nil
			}
			// The client gives every message of the callback back with the same level. With
			// several messages per callback (local redelivery mode, where only an undecodable
			// message ends up here) the others are retried too rather than dead-lettered.
			if cctx, ok := primitive.GetConcurrentlyCtx(ctx); ok && retryLevel != 0 && len(msgs) == 1 {
				cctx.DelayLevelWhenNextConsume = retryLevel
			}
			return consumer.ConsumeRetryLater, nil
		}
	}
	return consumer.ConsumeSuccess, nil
}

// handle delivers one message until it is acked, nacked for a broker retry, or the
// subscription stops. It returns the retry delay level a handler asked for.
func (sub *subscription) handle(ext *primitive.MessageExt) (outcome, int) {
	// Built only when something is logged: the hot path should not allocate a map per message.
	logFields := func() watermill.LogFields {
		return watermill.LogFields{"topic": sub.topic, "group": sub.group, "msg_id": ext.MsgId}
	}
	for {
		msg, err := sub.s.config.Unmarshaler.Unmarshal(ext)
		if err != nil {
			// It will never decode: send it to the DLQ (concurrent clustering mode) rather
			// than let it vanish or block the queue.
			sub.s.logger.Error("Cannot unmarshal message, sending it to the DLQ", err, logFields())
			return outcomeNack, -1
		}
		if !sub.startDelivery() {
			return outcomeAbort, 0
		}
		msgCtx, cancel := context.WithCancel(withDeliveryInfo(sub.baseCtx, ext, sub.group))
		msg.SetContext(msgCtx)

		select {
		case sub.out <- msg:
		case <-sub.stopDeliver:
			cancel()
			sub.endDelivery()
			return outcomeAbort, 0
		}

		select {
		case <-msg.Acked():
			cancel()
			sub.endDelivery()
			return outcomeAck, 0
		case <-msg.Nacked():
			cancel()
			sub.endDelivery()
			if sub.s.config.NackMode == NackBrokerRetry {
				return outcomeNack, retryDelayLevel(msg, sub.s.logger, logFields())
			}
			if d := sub.s.config.NackResendSleep; d > 0 {
				select {
				case <-time.After(d):
				case <-sub.stopDeliver:
					return outcomeAbort, 0
				}
			}
		case <-sub.abort:
			cancel()
			sub.endDelivery()
			return outcomeAbort, 0
		}
	}
}

// retryDelayLevel reads MetadataRetryDelayLevel; negative means straight to the DLQ, which the
// client expresses as -1.
func retryDelayLevel(msg *message.Message, logger watermill.LoggerAdapter, fields watermill.LogFields) int {
	v := msg.Metadata.Get(MetadataRetryDelayLevel)
	if v == "" {
		return 0
	}
	level, err := strconv.Atoi(v)
	if err != nil {
		logger.Error("Ignoring invalid "+MetadataRetryDelayLevel, err, fields)
		return 0
	}
	if level < 0 {
		return -1
	}
	if level > len(DelayLevels) {
		return len(DelayLevels)
	}
	return level
}
