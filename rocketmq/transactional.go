package rocketmq

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	rmq "github.com/apache/rocketmq-client-go/v2"
	"github.com/apache/rocketmq-client-go/v2/primitive"
	"github.com/apache/rocketmq-client-go/v2/producer"
)

// TransactionState is the outcome of a local transaction.
type TransactionState int

const (
	// TransactionUnknown leaves the half message pending; the broker asks CheckLocalTransaction
	// later (on Apache RocketMQ after transactionTimeOut, 6 s, then every 60 s (4.x) or 30 s
	// (5.x), at most 15 times).
	TransactionUnknown TransactionState = iota
	// TransactionCommit makes the message visible to subscribers.
	TransactionCommit
	// TransactionRollback discards the message.
	TransactionRollback
)

func (s TransactionState) String() string {
	switch s {
	case TransactionCommit:
		return "commit"
	case TransactionRollback:
		return "rollback"
	default:
		return "unknown"
	}
}

func (s TransactionState) primitive() primitive.LocalTransactionState {
	switch s {
	case TransactionCommit:
		return primitive.CommitMessageState
	case TransactionRollback:
		return primitive.RollbackMessageState
	default:
		return primitive.UnknowState
	}
}

// ErrTransactionRolledBack is returned by Publish when the local transaction rolled back.
var ErrTransactionRolledBack = errors.New("rocketmq: local transaction rolled back")

// TransactionalPublisherConfig configures a TransactionalPublisher.
type TransactionalPublisherConfig struct {
	// PublisherConfig holds the connection settings. GroupName defaults to
	// "rocketbus_tx_producer": the broker checks back with any producer of the group, so the
	// group must only contain producers that can answer CheckLocalTransaction. Batching, delay
	// and 5.x delivery time do not apply to transactional messages.
	PublisherConfig
	// ExecuteLocalTransaction runs the local transaction after the half message is stored and
	// decides its fate. Optional when every call uses PublishInTransaction with its own function.
	ExecuteLocalTransaction func(msg *message.Message) TransactionState
	// CheckLocalTransaction answers the broker's check-back for a half message whose outcome
	// was unknown (or lost). Required. It gets the message as a Subscriber would.
	CheckLocalTransaction func(msg *message.Message) TransactionState
}

func (c *TransactionalPublisherConfig) setDefaults() {
	if c.GroupName == "" {
		c.GroupName = "rocketbus_tx_producer"
	}
	c.PublisherConfig.setDefaults()
}

// Validate reports the first configuration problem, if any.
func (c TransactionalPublisherConfig) Validate() error {
	if err := c.PublisherConfig.Validate(); err != nil {
		return err
	}
	if c.CheckLocalTransaction == nil {
		return errors.New("rocketmq: TransactionalPublisherConfig.CheckLocalTransaction is nil (the broker checks back on unknown outcomes)")
	}
	return nil
}

// TransactionalPublisher publishes messages with RocketMQ transactions: the message is stored
// as a half message, the local transaction runs, and the message becomes visible only on
// commit. It implements message.Publisher.
type TransactionalPublisher struct {
	config   TransactionalPublisherConfig
	producer rmq.TransactionProducer
	logger   watermill.LoggerAdapter
	listener *txListener

	mu     sync.RWMutex
	closed bool
}

// NewTransactionalPublisher validates config and starts a transactional producer with its own
// client instance (the client cannot share one with other producers of the group).
func NewTransactionalPublisher(config TransactionalPublisherConfig, logger watermill.LoggerAdapter) (*TransactionalPublisher, error) {
	config.setDefaults()
	if err := config.Validate(); err != nil {
		return nil, err
	}
	if logger == nil {
		logger = watermill.NopLogger{}
	}
	l := &txListener{config: &config, logger: logger}
	p, err := producer.NewTransactionProducer(l, producerOptions(config.PublisherConfig)...)
	if err != nil {
		return nil, fmt.Errorf("rocketmq: create transactional producer: %w", err)
	}
	if err := p.Start(); err != nil {
		_ = p.Shutdown()
		return nil, fmt.Errorf("rocketmq: start transactional producer: %w", err)
	}
	return &TransactionalPublisher{config: config, producer: p, logger: logger, listener: l}, nil
}

// Publish sends each message in its own transaction decided by ExecuteLocalTransaction. It
// returns ErrTransactionRolledBack (wrapped) for the first rolled-back message and stops there;
// an unknown outcome is not an error (the check-back decides).
func (p *TransactionalPublisher) Publish(topic string, msgs ...*message.Message) error {
	if p.config.ExecuteLocalTransaction == nil {
		return errors.New("rocketmq: TransactionalPublisherConfig.ExecuteLocalTransaction is nil; use PublishInTransaction")
	}
	for _, msg := range msgs {
		if _, err := p.PublishInTransaction(topic, msg, p.config.ExecuteLocalTransaction); err != nil {
			return err
		}
	}
	return nil
}

// PublishInTransaction sends msg as a half message, runs local (or the configured
// ExecuteLocalTransaction when nil) and reports the resulting state. A rollback is returned as
// the state and ErrTransactionRolledBack.
func (p *TransactionalPublisher) PublishInTransaction(topic string, msg *message.Message, local func(*message.Message) TransactionState) (TransactionState, error) {
	p.mu.RLock()
	defer p.mu.RUnlock()
	if p.closed {
		return TransactionUnknown, ErrPublisherClosed
	}
	if local == nil {
		local = p.config.ExecuteLocalTransaction
	}
	if local == nil {
		return TransactionUnknown, errors.New("rocketmq: no local transaction function")
	}
	if err := validateName("topic", topic); err != nil {
		return TransactionUnknown, err
	}
	out, _, err := marshalAll(p.config.PublisherConfig, topic, []*message.Message{msg})
	if err != nil {
		return TransactionUnknown, err
	}
	m := out[0]
	if m.GetProperty(primitive.PropertyDelayTimeLevel) != "" || m.GetProperty(deliverTimeProperty) != "" {
		return TransactionUnknown, fmt.Errorf("%w: message %s: transactional messages cannot be delayed", ErrInvalidMetadata, msg.UUID)
	}

	call := &txCall{msg: msg, local: local}
	p.listener.pending.Store(m, call)
	defer p.listener.pending.Delete(m)

	ctx := msg.Context()
	if ctx == nil {
		ctx = context.Background()
	}
	ctx, cancel := context.WithTimeout(ctx, p.config.SendTimeout*time.Duration(1+p.config.Retries))
	defer cancel()
	var res *primitive.TransactionSendResult
	for attempt := 0; ; attempt++ {
		res, err = p.producer.SendMessageInTransaction(ctx, m)
		if err == nil || !routeMissing(err) || attempt >= maxRouteRetries {
			break
		}
		// No half message was stored and the local transaction did not run (see Publisher).
		select {
		case <-ctx.Done():
			return TransactionUnknown, errors.Join(err, ctx.Err())
		case <-time.After(routeRetryDelay(attempt)):
		}
	}
	if call.panicked != nil {
		return TransactionUnknown, fmt.Errorf("rocketmq: local transaction of message %s panicked (the broker will check back): %v", msg.UUID, call.panicked)
	}
	if err != nil {
		return TransactionUnknown, fmt.Errorf("rocketmq: send half message %s to %q: %w", msg.UUID, topic, err)
	}
	if res.Status != primitive.SendOK {
		return TransactionUnknown, fmt.Errorf("rocketmq: send half message %s to %q: broker answered %s", msg.UUID, topic, sendStatus(res.Status))
	}
	if !call.ran {
		return TransactionUnknown, fmt.Errorf("rocketmq: local transaction of message %s did not run", msg.UUID)
	}
	if call.state == TransactionRollback {
		return TransactionRollback, fmt.Errorf("%w: message %s", ErrTransactionRolledBack, msg.UUID)
	}
	return call.state, nil
}

// Close shuts the producer down after publishes in progress. It is idempotent. Half messages
// still unknown are checked back with other producers of the group, or after a restart.
func (p *TransactionalPublisher) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil
	}
	p.closed = true
	if err := p.producer.Shutdown(); err != nil {
		return fmt.Errorf("rocketmq: shut down transactional producer: %w", err)
	}
	return nil
}

type txCall struct {
	msg      *message.Message
	local    func(*message.Message) TransactionState
	ran      bool
	state    TransactionState
	panicked any
}

// txListener bridges the client's listener to the Watermill-level functions. The client calls
// ExecuteLocalTransaction on the publishing goroutine with the very *primitive.Message that was
// passed in, which is how the call is found again.
type txListener struct {
	config  *TransactionalPublisherConfig
	logger  watermill.LoggerAdapter
	pending sync.Map // *primitive.Message -> *txCall
}

func (l *txListener) ExecuteLocalTransaction(m *primitive.Message) (state primitive.LocalTransactionState) {
	v, ok := l.pending.Load(m)
	if !ok {
		l.logger.Error("Local transaction for an unknown message", nil, watermill.LogFields{"topic": m.Topic})
		return primitive.UnknowState
	}
	call := v.(*txCall)
	defer func() {
		if r := recover(); r != nil {
			call.panicked = r
			state = primitive.UnknowState
		}
	}()
	call.state = call.local(call.msg)
	call.ran = true
	return call.state.primitive()
}

func (l *txListener) CheckLocalTransaction(ext *primitive.MessageExt) (state primitive.LocalTransactionState) {
	fields := watermill.LogFields{"topic": ext.Topic, "msg_id": ext.MsgId}
	msg, err := l.config.Marshaler.Unmarshal(ext)
	if err != nil {
		l.logger.Error("Cannot unmarshal checked-back half message", err, fields)
		return primitive.UnknowState
	}
	defer func() {
		if r := recover(); r != nil {
			l.logger.Error("CheckLocalTransaction panicked", fmt.Errorf("%v", r), fields)
			state = primitive.UnknowState
		}
	}()
	return l.config.CheckLocalTransaction(msg).primitive()
}
