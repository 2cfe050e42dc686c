package router

import (
	"context"
	"errors"
	"fmt"
	"reflect"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	wmmiddleware "github.com/ThreeDotsLabs/watermill/message/router/middleware"
)

// HandlerOption configures one handler.
type HandlerOption func(*handlerOptions)

type handlerOptions struct {
	name       string
	group      string
	codec      Codec
	subscriber message.Subscriber
	middleware []message.HandlerMiddleware
}

// WithName names the handler (names must be unique in a router). Default: the topic, followed
// by "@group" when the handler has a group.
func WithName(name string) HandlerOption { return func(o *handlerOptions) { o.name = name } }

// WithGroup sets the consumer group of the subscription. With Config.NewSubscriber the
// handler consumes through the subscriber of that group.
func WithGroup(group string) HandlerOption { return func(o *handlerOptions) { o.group = group } }

// WithCodec overrides the router's codec for this handler's input and output.
func WithCodec(c Codec) HandlerOption { return func(o *handlerOptions) { o.codec = c } }

// WithSubscriber makes this handler consume through sub instead of the router's subscribers.
// The router does not close sub.
func WithSubscriber(sub message.Subscriber) HandlerOption {
	return func(o *handlerOptions) { o.subscriber = sub }
}

// WithMiddleware adds middleware to this handler only, inside the router-wide middleware and
// outside the poisoning of undecodable messages, so a Retry added here never retries a decode
// error.
func WithMiddleware(m ...message.HandlerMiddleware) HandlerOption {
	return func(o *handlerOptions) { o.middleware = append(o.middleware, m...) }
}

// DecodeError reports a payload the handler's codec cannot decode. Such a message can never
// succeed, so the router sends it to the poison topic instead of retrying it.
type DecodeError struct {
	// Topic is the topic the message was consumed from.
	Topic string
	// Codec is the name of the codec that failed (Codec.Name).
	Codec string
	// Type is the Go type the payload was decoded into, e.g. "main.Order".
	Type string
	// UUID is the Watermill UUID of the message.
	UUID string
	// Err is the codec's error.
	Err error
}

// Error names the message, topic, target type and codec, so the poison queue's reason says
// what to fix.
func (e *DecodeError) Error() string {
	return fmt.Sprintf("router: cannot decode message %s from topic %q into %s with codec %s: %v",
		e.UUID, e.Topic, e.Type, e.Codec, e.Err)
}

// Unwrap returns the codec's error.
func (e *DecodeError) Unwrap() error { return e.Err }

// IsDecodeError reports whether err is, or wraps, a *DecodeError. Watermill's Retry can use it
// in ShouldRetry to avoid retrying messages that will never decode.
func IsDecodeError(err error) bool {
	var de *DecodeError
	return errors.As(err, &de)
}

// Subscribe registers a handler for topic that decodes each message into a T. A nil error acks
// the message; an error nacks it (and the middleware decides about retries). The handler's
// context carries the message (MessageFromContext, Metadata) and its Subscription.
func Subscribe[T any](r *Router, topic string, handler func(ctx context.Context, msg *T) error, opts ...HandlerOption) error {
	if handler == nil {
		return fmt.Errorf("router: nil handler for topic %q", topic)
	}
	typ := typeName[T]()
	return r.addHandler(topic, "", opts, func(msg *message.Message, codec Codec) ([]*message.Message, error) {
		v := new(T)
		if err := codec.Unmarshal(msg.Payload, v); err != nil {
			return nil, &DecodeError{Topic: topic, Codec: codec.Name(), Type: typ, UUID: msg.UUID, Err: err}
		}
		return nil, handler(withMessage(msg), v)
	})
}

// Handle registers a handler for topic whose results are encoded and published to
// publishTopic through Config.Publisher, after the handler's middleware saw them (so
// Watermill's CorrelationID, and this module's tracing, apply to them). The input is acked only
// once every output is published.
func Handle[In, Out any](r *Router, topic, publishTopic string, handler func(ctx context.Context, msg *In) ([]*Out, error), opts ...HandlerOption) error {
	if handler == nil {
		return fmt.Errorf("router: nil handler for topic %q", topic)
	}
	if publishTopic == "" {
		return fmt.Errorf("router: handler for topic %q has an empty publish topic", topic)
	}
	if r.cfg.Publisher == nil {
		return fmt.Errorf("router: handler for topic %q publishes to %q but the router has no Publisher", topic, publishTopic)
	}
	typ := typeName[In]()
	return r.addHandler(topic, publishTopic, opts, func(msg *message.Message, codec Codec) ([]*message.Message, error) {
		v := new(In)
		if err := codec.Unmarshal(msg.Payload, v); err != nil {
			return nil, &DecodeError{Topic: topic, Codec: codec.Name(), Type: typ, UUID: msg.UUID, Err: err}
		}
		ctx := withMessage(msg)
		outs, err := handler(ctx, v)
		if err != nil {
			return nil, err
		}
		// Outputs keep the handler's context values (trace span, Kratos metadata) but not its
		// cancellation, which ends when the handler returns, before they are published.
		outCtx := context.WithoutCancel(ctx)
		msgs := make([]*message.Message, 0, len(outs))
		for i, out := range outs {
			if out == nil {
				return nil, fmt.Errorf("router: handler for topic %q returned a nil output at index %d", topic, i)
			}
			m, err := NewMessage(outCtx, codec, out)
			if err != nil {
				return nil, fmt.Errorf("router: handler for topic %q: output %d: %w", topic, i, err)
			}
			msgs = append(msgs, m)
		}
		return msgs, nil
	})
}

// testHookLateAdd, when set by a test, runs in addHandler between releasing r.mu and
// subscribing a handler added to a running router.
var testHookLateAdd func(r *Router)

type rawHandler func(msg *message.Message, codec Codec) ([]*message.Message, error)

func (r *Router) addHandler(topic, publishTopic string, opts []HandlerOption, h rawHandler) error {
	if topic == "" {
		return errors.New("router: empty topic")
	}
	o := handlerOptions{codec: r.cfg.Codec}
	for _, opt := range opts {
		if opt != nil {
			opt(&o)
		}
	}
	if o.codec == nil {
		return fmt.Errorf("router: nil codec for topic %q", topic)
	}
	for i, m := range o.middleware {
		if m == nil {
			return fmt.Errorf("router: handler middleware %d for topic %q is nil", i, topic)
		}
	}
	if o.name == "" {
		o.name = topic
		if o.group != "" {
			o.name = topic + "@" + o.group
		}
	}

	// The poison middleware wraps the handler function itself, so a decode error reaches the
	// poison queue before any retry middleware (the handler's own or router-wide) sees it. The
	// handler's own middleware wraps that directly rather than through Watermill's
	// handler-level middleware, which a running router may snapshot before it is added.
	codec := o.codec
	fn := message.HandlerFunc(func(msg *message.Message) ([]*message.Message, error) { return h(msg, codec) })
	fn = r.poison(fn)
	for i := len(o.middleware) - 1; i >= 0; i-- {
		fn = o.middleware[i](fn)
	}

	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return ErrClosed
	}
	if _, dup := r.handlers[o.name]; dup {
		r.mu.Unlock()
		return fmt.Errorf("router: a handler named %q is already registered (use WithName to register another handler for topic %q)", o.name, topic)
	}
	inner, err := r.subscriberFor(o.group, o.subscriber)
	if err != nil {
		r.mu.Unlock()
		return err
	}
	sub := &subscribeGuard{Subscriber: inner, inflight: r.inflight, forwarders: r.forwarders,
		closing: r.closing, abandon: r.abandon}
	r.guards = append(r.guards, sub)
	// Registered before Watermill knows the handler, so its first message finds it.
	r.handlers[o.name] = Subscription{Handler: o.name, Topic: topic, Group: o.group, PublishTopic: publishTopic}
	var wh *message.Handler
	if publishTopic == "" {
		wh = r.wm.AddConsumerHandler(o.name, topic, sub, func(msg *message.Message) error {
			_, err := fn(msg)
			return err
		})
	} else {
		wh = r.wm.AddHandler(o.name, topic, sub, publishTopic, noClosePublisher{r.cfg.Publisher}, fn)
	}
	r.wmHandlers = append(r.wmHandlers, wh)
	started, runCtx := r.started, r.runCtx
	if started {
		// Counted under r.mu, where closed is false, so a Shutdown that starts from now on
		// waits for this registration to finish before closing Watermill's router.
		r.lateAdds.Add(1)
	}
	r.mu.Unlock()

	if !started {
		return nil
	}
	defer r.lateAdds.Done()
	if testHookLateAdd != nil {
		testHookLateAdd(r)
	}
	// A running router does not subscribe handlers added after its Run did; wait until Run
	// subscribed the others (RunHandlers is not safe before), then subscribe this one. Outside
	// r.mu: subscribing can take a while, and messages of other handlers need the lock.
	select {
	case <-r.wm.Running():
	case <-r.runDone:
	}
	select {
	case <-r.runDone:
		return ErrClosed
	default:
	}
	if err := r.wm.RunHandlers(runCtx); err != nil {
		return fmt.Errorf("router: subscribing %q: %w", topic, err)
	}
	return sub.failure()
}

// newPoisonMiddleware sends undecodable messages to the poison topic, or, without a
// Publisher (only allowed with DropUndecodable), acks and logs them.
func newPoisonMiddleware(cfg Config) (message.HandlerMiddleware, error) {
	if cfg.Publisher != nil {
		mw, err := wmmiddleware.PoisonQueueWithFilter(cfg.Publisher, cfg.PoisonTopic, IsDecodeError)
		if err != nil {
			return nil, fmt.Errorf("router: poison queue: %w", err)
		}
		return mw, nil
	}
	logger := cfg.Logger
	return func(h message.HandlerFunc) message.HandlerFunc {
		return func(msg *message.Message) ([]*message.Message, error) {
			out, err := h(msg)
			if err != nil && IsDecodeError(err) {
				// There is no poison queue and retrying would loop forever: the user chose
				// (DropUndecodable) to ack the message once the error is logged with the whole
				// payload.
				msg.Metadata.Set(wmmiddleware.ReasonForPoisonedKey, err.Error())
				logger.Error("Dropping undecodable message: the router has no Publisher for the poison queue", err,
					watermill.LogFields{"message_uuid": msg.UUID, "payload": string(msg.Payload), "metadata": msg.Metadata})
				return nil, nil
			}
			return out, err
		}
	}, nil
}

type messageKey struct{}

func withMessage(msg *message.Message) context.Context {
	return context.WithValue(msg.Context(), messageKey{}, msg)
}

// MessageFromContext returns the message a handler is processing; ctx is the handler's context
// or one derived from it.
func MessageFromContext(ctx context.Context) (*message.Message, bool) {
	m, ok := ctx.Value(messageKey{}).(*message.Message)
	return m, ok
}

// Metadata returns the metadata of the message a handler is processing, or nil outside a
// handler. It is the message's own map: a handler may set keys on it for the middleware that
// runs after it (for example a RocketMQ retry delay level before the message is nacked).
func Metadata(ctx context.Context) message.Metadata {
	if m, ok := MessageFromContext(ctx); ok {
		return m.Metadata
	}
	return nil
}

func typeName[T any]() string {
	return reflect.TypeFor[T]().String()
}
