package router

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
)

// DefaultPoisonTopic receives messages that no handler can decode, unless Config.PoisonTopic
// names another topic. The name only uses characters every backend accepts in a topic
// (RocketMQ allows neither dots nor slashes).
const DefaultPoisonTopic = "rocketbus_poison"

// ErrClosed is returned by Run and by the registration functions once the router is closed.
var ErrClosed = errors.New("router: closed")

// Config configures a Router. Exactly one of Subscriber and NewSubscriber must be set.
type Config struct {
	// Publisher receives the messages publishing handlers return and the poisoned messages.
	// It may be nil only for a router that only consumes and sets DropUndecodable. The router
	// never closes it: whoever created it closes it, after the router.
	Publisher message.Publisher

	// DropUndecodable lets a router without a Publisher run: with no poison topic to send
	// them to, messages no handler can decode are then acked and dropped (logged at error
	// level with their payload, through Logger, which discards logs by default). Without it,
	// New rejects a Config with a nil Publisher rather than lose such messages silently. It has
	// no effect when Publisher is set.
	DropUndecodable bool

	// Subscriber serves every subscription (except WithSubscriber ones), whatever its group. It
	// suits backends without consumer groups (gochannel). Set it or NewSubscriber, not both.
	// The router does not close it; its subscriptions end through their context.
	Subscriber message.Subscriber

	// NewSubscriber creates the subscriber of one consumer group; the router calls it once per
	// distinct group (group is "" for subscriptions without a group). Backends where a group
	// must not span topics (RocketMQ) construct one subscriber per group here. The router owns
	// what it returns and closes it.
	NewSubscriber func(group string) (message.Subscriber, error)

	// Codec decodes handler inputs and encodes handler outputs. Default: JSON.
	Codec Codec

	// PoisonTopic receives messages whose payload cannot be decoded, with the decode error in
	// their metadata (Watermill's PoisonQueue keys). Default: DefaultPoisonTopic.
	PoisonTopic string

	// Middleware is applied to every handler, first element outermost. Watermill's Retry,
	// PoisonQueue, CorrelationID, Recoverer, Timeout and Throttle all fit here.
	Middleware []message.HandlerMiddleware

	// CloseTimeout bounds each of the two waits of Close and Shutdown: for in-flight handlers to
	// finish, then, for those still running, to return once their contexts are cancelled. Close
	// thus returns within twice CloseTimeout. Default: 30 s (the Watermill router's default).
	CloseTimeout time.Duration

	// Logger receives the router's logs. Default: no logs.
	Logger watermill.LoggerAdapter
}

func (c *Config) setDefaults() {
	if c.Codec == nil {
		c.Codec = JSON()
	}
	if c.PoisonTopic == "" {
		c.PoisonTopic = DefaultPoisonTopic
	}
	if c.CloseTimeout == 0 {
		c.CloseTimeout = 30 * time.Second
	}
	if c.Logger == nil {
		c.Logger = watermill.NopLogger{}
	}
}

// Validate reports the first configuration problem.
func (c Config) Validate() error {
	if c.Subscriber == nil && c.NewSubscriber == nil {
		return errors.New("router: config needs a Subscriber or a NewSubscriber function")
	}
	if c.Subscriber != nil && c.NewSubscriber != nil {
		// NewSubscriber would serve every group, "" included: Subscriber would never be used.
		return errors.New("router: config sets both Subscriber and NewSubscriber; set one (NewSubscriber also serves handlers without a group)")
	}
	if c.Publisher == nil && !c.DropUndecodable {
		return errors.New("router: config needs a Publisher for the poison topic (set DropUndecodable to run without one and drop undecodable messages)")
	}
	if c.CloseTimeout < 0 {
		return fmt.Errorf("router: negative CloseTimeout %s", c.CloseTimeout)
	}
	for i, m := range c.Middleware {
		if m == nil {
			return fmt.Errorf("router: Middleware[%d] is nil", i)
		}
	}
	return nil
}

// Router runs typed handlers on a Watermill router. It adds to Watermill's router: codecs,
// a subscriber per consumer group, poisoning of undecodable messages, and a shutdown bounded
// by a context (Shutdown) that lets in-flight handlers finish while the context lasts.
type Router struct {
	cfg    Config
	wm     *message.Router
	poison message.HandlerMiddleware // wraps every handler function, see addHandler

	// abort is cancelled when Shutdown stops waiting for handlers to finish (its context ended
	// or CloseTimeout passed): handler contexts derive from it instead of from the subscription,
	// so that closing the subscription does not cancel the work that is being drained.
	abort       context.Context
	abortCancel context.CancelFunc

	mu          sync.Mutex
	subs        map[string]message.Subscriber // by group, created by NewSubscriber
	handlers    map[string]Subscription       // by handler name
	wmHandlers  []*message.Handler
	guards      []*subscribeGuard
	started     bool
	closed      bool
	runCtx      context.Context
	runCancel   context.CancelFunc
	runDone     chan struct{}
	shutdownErr error
	shutdownCh  chan struct{}

	// lateAdds counts handlers registered while running that are between Watermill's
	// AddHandler (which counts them as running) and RunHandlers (which starts them). Shutdown
	// waits for it before Watermill's Close, which would otherwise wait for a handler that can
	// no longer start, holding the lock RunHandlers needs, until CloseTimeout.
	lateAdds sync.WaitGroup

	// inflight counts messages handed to Watermill that are not acked or nacked yet. Watermill's
	// Close can return while a handler it started at the last moment still runs (its
	// running-handlers wait may finish before the handler loop hands over its last message), so
	// Shutdown also waits for this count.
	inflight *inflight

	// forwarders counts the goroutines that hand a subscription's messages to Watermill (see
	// subscribeGuard); Shutdown waits for them, so none outlives it.
	forwarders *inflight
	// closing is closed when Shutdown stops handing messages to Watermill: from then on the
	// forwarders nack what their subscriptions still deliver. abandon is closed when Shutdown
	// gives up on subscriptions that did not end: their forwarders stop reading them.
	closing, abandon         chan struct{}
	closingOnce, abandonOnce sync.Once
}

// inflight counts work in progress and tells when there is none.
type inflight struct {
	mu   sync.Mutex
	n    int
	idle chan struct{} // closed while n == 0
}

func newInflight() *inflight {
	idle := make(chan struct{})
	close(idle)
	return &inflight{idle: idle}
}

func (f *inflight) add() {
	f.mu.Lock()
	if f.n == 0 {
		f.idle = make(chan struct{})
	}
	f.n++
	f.mu.Unlock()
}

func (f *inflight) done() {
	f.mu.Lock()
	f.n--
	if f.n == 0 {
		close(f.idle)
	}
	f.mu.Unlock()
}

// wait returns once nothing is in progress, or ctx's error when ctx ends first. Nothing in
// progress wins over an ended ctx.
func (f *inflight) wait(ctx context.Context) error {
	f.mu.Lock()
	idle := f.idle
	f.mu.Unlock()
	select {
	case <-idle:
		return nil
	default:
	}
	select {
	case <-idle:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Subscription describes the handler that processes a message. Middleware reads it from the
// message's context with SubscriptionFromContext.
type Subscription struct {
	// Handler is the handler's name (WithName, or the topic with "@group" when grouped).
	Handler string
	// Topic is the topic the handler consumes.
	Topic string
	// Group is the consumer group (WithGroup), "" when none.
	Group string
	// PublishTopic is where Handle publishes the handler's results; "" for Subscribe.
	PublishTopic string
}

// New creates a router. Nothing is subscribed before Run.
func New(cfg Config) (*Router, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	wm, err := message.NewRouter(message.RouterConfig{CloseTimeout: cfg.CloseTimeout}, cfg.Logger)
	if err != nil {
		return nil, fmt.Errorf("router: %w", err)
	}
	poison, err := newPoisonMiddleware(cfg)
	if err != nil {
		return nil, err
	}
	r := &Router{
		cfg:        cfg,
		wm:         wm,
		poison:     poison,
		subs:       map[string]message.Subscriber{},
		handlers:   map[string]Subscription{},
		runDone:    make(chan struct{}),
		shutdownCh: make(chan struct{}),
		inflight:   newInflight(),
		forwarders: newInflight(),
		closing:    make(chan struct{}),
		abandon:    make(chan struct{}),
	}
	r.abort, r.abortCancel = context.WithCancel(context.Background())
	// Added first, so it is the outermost middleware of every handler.
	wm.AddMiddleware(r.scopeMiddleware)
	wm.AddMiddleware(cfg.Middleware...)
	return r, nil
}

// Watermill returns the underlying Watermill router, for plugins and decorators this package
// does not wrap. Handlers must be added through this package.
func (r *Router) Watermill() *message.Router { return r.wm }

// Publisher returns the configured publisher (nil when none).
func (r *Router) Publisher() message.Publisher { return r.cfg.Publisher }

// Codec returns the router's default codec.
func (r *Router) Codec() Codec { return r.cfg.Codec }

// Logger returns the router's logger.
func (r *Router) Logger() watermill.LoggerAdapter { return r.cfg.Logger }

// AddMiddleware adds middleware to every handler, inside the router-wide middleware added
// before it and outside each handler's own (WithMiddleware). It must be called before Run:
// Watermill reads its middleware list as handlers start, so adding to it while running would
// race with them; after Run (or Close) it returns an error and adds nothing.
func (r *Router) AddMiddleware(m ...message.HandlerMiddleware) error {
	for i, mw := range m {
		if mw == nil {
			return fmt.Errorf("router: middleware %d is nil", i)
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return ErrClosed
	}
	if r.started {
		return errors.New("router: AddMiddleware after Run: add middleware before running the router")
	}
	r.wm.AddMiddleware(m...)
	return nil
}

// Run subscribes every handler and processes messages until the router is closed or ctx is
// cancelled. It returns ErrClosed when the router was closed before it ran, and the
// subscription error when a topic cannot be subscribed.
func (r *Router) Run(ctx context.Context) error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return ErrClosed
	}
	if r.started {
		r.mu.Unlock()
		return errors.New("router: already running")
	}
	r.started = true
	// Cancelled by Shutdown: it ends the subscriptions of handlers added while running, whose
	// context is not the one Watermill cancels when it closes.
	ctx, r.runCancel = context.WithCancel(ctx)
	r.runCtx = ctx
	r.mu.Unlock()
	defer r.runCancel()

	defer close(r.runDone)
	runErr := make(chan error, 1)
	go func() { runErr <- r.wm.Run(ctx) }()
	select {
	case <-r.wm.Running():
	case err := <-runErr:
		// Watermill closes a router whose handlers all ended, which a failed subscription
		// (see subscribeGuard) may cause before Running is observed.
		return errors.Join(r.subscribeErrors(), err)
	}
	// Subscription failures do not fail Watermill's Run here (see subscribeGuard): close the
	// router, which stops the handlers that did subscribe, and report the failure.
	if err := r.subscribeErrors(); err != nil {
		closeErr := r.wm.Close()
		return errors.Join(err, closeErr, <-runErr)
	}
	return <-runErr
}

func (r *Router) subscribeErrors() error {
	r.mu.Lock()
	guards := append([]*subscribeGuard(nil), r.guards...)
	r.mu.Unlock()
	var errs []error
	for _, g := range guards {
		if err := g.failure(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// subscribeGuard turns a failed Subscribe into a closed message channel, recording the error.
// Watermill's Run, when a subscription fails, returns with handlers it counted but never
// started, and its watcher goroutine then waits for them forever; with the guard every handler
// starts (and the failed one ends at once), so the router closes cleanly.
//
// It also counts each message it hands to Watermill in inflight, from before it is handed
// over until it is acked or nacked, so Shutdown knows of every message still being handled.
// Once Shutdown closed closing, it nacks messages instead of handing them over (Watermill's
// handler loop would still start handlers for them, after Watermill's Close returned).
type subscribeGuard struct {
	message.Subscriber
	inflight   *inflight
	forwarders *inflight
	closing    <-chan struct{}
	abandon    <-chan struct{}
	mu         sync.Mutex
	err        error
}

func (g *subscribeGuard) Subscribe(ctx context.Context, topic string) (<-chan *message.Message, error) {
	ch, err := g.Subscriber.Subscribe(ctx, topic)
	if err != nil {
		g.mu.Lock()
		g.err = fmt.Errorf("router: subscribing to topic %q: %w", topic, err)
		g.mu.Unlock()
		closed := make(chan *message.Message)
		close(closed)
		return closed, nil
	}
	// Unbuffered: Watermill's handler loop takes each message at once, so the hand-over adds
	// no queue and the subscriber keeps its own flow control.
	out := make(chan *message.Message)
	g.forwarders.add()
	go func() {
		defer g.forwarders.done()
		defer close(out) // ends Watermill's handler loop
		for {
			select {
			case msg, ok := <-ch:
				if !ok {
					return
				}
				g.forward(msg, out)
			case <-g.abandon:
				return
			}
		}
	}()
	return out, nil
}

// forward hands msg to Watermill, counted in inflight, or nacks it once Shutdown stopped
// handing messages over.
func (g *subscribeGuard) forward(msg *message.Message, out chan<- *message.Message) {
	select {
	case <-g.closing:
		msg.Nack()
		return
	default:
	}
	g.inflight.add()
	// Watermill acks or nacks every message it takes, after its handler (and the publishing of
	// what the handler produced) ends.
	go func() {
		select {
		case <-msg.Acked():
		case <-msg.Nacked():
		}
		g.inflight.done()
	}()
	select {
	case out <- msg:
		// Handed over, possibly just as closing closed: counted, so Shutdown (which waits for
		// the forwarders before it waits for inflight) still waits for its handler.
	case <-g.closing:
		msg.Nack() // ends its count
	}
}

// Close keeps Watermill's router from closing the subscriber: Watermill closes it once per
// handler, while a group's subscriber serves several handlers and the Config.Subscriber and
// WithSubscriber ones are not the router's. The subscriptions still end, because Watermill
// cancels their context; Shutdown closes the subscribers the router owns, once each, after the
// handlers stopped.
func (g *subscribeGuard) Close() error { return nil }

func (g *subscribeGuard) failure() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.err
}

// Running is closed once every handler registered before Run is subscribed.
func (r *Router) Running() <-chan struct{} { return r.wm.Running() }

// Close is Shutdown with a context that never ends: it stops the subscriptions, waits up to
// Config.CloseTimeout for in-flight handlers to finish, then cancels the contexts of those still
// running and waits up to another CloseTimeout for them to return. It returns within twice
// CloseTimeout, plus the time Run needs to subscribe its handlers (Close waits for that first)
// and the time the subscribers the router owns take to close.
func (r *Router) Close() error {
	return r.Shutdown(context.Background())
}

// errCloseTimeout is the cause of a Shutdown that stopped waiting because Config.CloseTimeout
// passed; it wraps context.DeadlineExceeded, like a deadline of Shutdown's context.
type errCloseTimeout time.Duration

func (e errCloseTimeout) Error() string {
	return fmt.Sprintf("close timeout %v passed: %v", time.Duration(e), context.DeadlineExceeded)
}

func (e errCloseTimeout) Unwrap() error { return context.DeadlineExceeded }

// Shutdown stops the subscriptions, then waits until every message handed to a handler is
// acked or nacked, while ctx lasts and at most Config.CloseTimeout. When either ends first, the
// handlers' contexts are cancelled (so a handler that honours its context returns at once and
// its message is nacked, not acked), what the subscriptions still deliver is nacked instead of
// handled, and Shutdown waits up to another CloseTimeout for the handlers to return and the
// subscriptions to end, then returns an error wrapping the cause (ctx's error, or an error
// wrapping context.DeadlineExceeded when CloseTimeout passed). Shutdown thus returns at most
// CloseTimeout after the earlier of ctx's end and CloseTimeout, plus the time Run needs to
// subscribe its handlers (Shutdown waits for that first) and the time the subscribers the router
// owns take to close. Unless its error says handlers are still running (they ignored their
// context), no handler runs once Shutdown returned; a subscription still open then is no longer
// read (the error says so too). Shutdown is idempotent: later calls wait for the first and
// return its result.
func (r *Router) Shutdown(ctx context.Context) error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		select {
		case <-r.shutdownCh:
			return r.shutdownErr
		case <-ctx.Done():
			return fmt.Errorf("router: waiting for shutdown: %w", ctx.Err())
		}
	}
	r.closed = true
	started := r.started
	r.mu.Unlock()

	err := r.shutdown(ctx, started)

	r.mu.Lock()
	subs := r.subs
	r.subs = nil
	r.mu.Unlock()
	for group, sub := range subs {
		if cerr := sub.Close(); cerr != nil {
			err = errors.Join(err, fmt.Errorf("router: closing subscriber of group %q: %w", group, cerr))
		}
	}
	r.abortCancel()

	r.shutdownErr = err
	close(r.shutdownCh)
	return err
}

func (r *Router) shutdown(ctx context.Context, started bool) error {
	if !started {
		// Watermill's Close would wait for handlers that never ran.
		return nil
	}
	// Handlers get until the earlier of ctx's end and CloseTimeout to finish.
	drain, cancel := context.WithTimeoutCause(ctx, r.cfg.CloseTimeout, errCloseTimeout(r.cfg.CloseTimeout))
	defer cancel()
	// Watermill's Close must not run before its Run subscribed the handlers: it would hold the
	// handler lock Run needs until CloseTimeout.
	select {
	case <-r.wm.Running():
	case <-r.runDone:
		// Run failed before it was running: its context cancellation ends the subscriptions of
		// the handlers that did start. Their messages are not Watermill's Close's to wait for.
		r.lateAdds.Wait()
		r.stopForwarding()
		return r.finish(drain, nil)
	}
	r.cfg.Logger.Debug("Waiting for handlers registered while running to start", nil)
	r.lateAdds.Wait()

	closed := make(chan error, 1)
	go func() { closed <- r.wm.Close() }()
	r.runCancel()
	// Watermill's Run returns once the handlers finished (or its CloseTimeout passed), whichever
	// of its Close calls (ours, or its own when every subscription ended) did the waiting.
	select {
	case <-r.runDone:
		if err := <-closed; err != nil {
			// Watermill's CloseTimeout passed with handlers still running, or its handler
			// loops still reading their subscriptions; ours, which started first, too.
			closed := make(chan error, 1)
			closed <- err
			return r.giveUp(errCloseTimeout(r.cfg.CloseTimeout), closed)
		}
		// The handler loops ended, and so did the forwarders; a handler Watermill started at
		// the last moment may still run.
		r.stopForwarding()
		return r.finish(drain, nil)
	case <-drain.Done():
		return r.giveUp(context.Cause(drain), closed)
	}
}

// stopForwarding makes the forwarders nack what their subscriptions still deliver.
func (r *Router) stopForwarding() { r.closingOnce.Do(func() { close(r.closing) }) }

// finish waits, while drain lasts, for the forwarders to stop and then for the messages they
// handed over to be acked or nacked (once the forwarders stopped no message is handed over, so
// an idle count is final); it gives up when drain ends first.
func (r *Router) finish(drain context.Context, closed <-chan error) error {
	if r.forwarders.wait(drain) != nil || r.inflight.wait(drain) != nil {
		return r.giveUp(context.Cause(drain), closed)
	}
	r.waitStopped()
	return nil
}

// giveUp cancels the handlers still running and stops forwarding, then waits up to
// Config.CloseTimeout for the handlers to return and the subscriptions to end. A subscription
// still open then is abandoned: its forwarder stops reading it. closed, when not nil, delivers
// the result of Watermill's Close.
func (r *Router) giveUp(cause error, closed <-chan error) error {
	r.abortCancel()
	r.stopForwarding()
	grace, cancel := context.WithTimeout(context.Background(), r.cfg.CloseTimeout)
	defer cancel()
	// Watermill's Close returns within its own CloseTimeout, which started no later than ours.
	<-r.runDone
	errs := []error{nil}
	if closed != nil {
		if err := <-closed; err != nil {
			errs = append(errs, fmt.Errorf("router: closing Watermill's router: %w", err))
		}
	}
	if r.forwarders.wait(grace) != nil {
		r.abandonOnce.Do(func() { close(r.abandon) })
		_ = r.forwarders.wait(context.Background()) // they return at once now
		errs = append(errs, fmt.Errorf("router: some subscriptions still open %v after the handlers were cancelled: no longer read", r.cfg.CloseTimeout))
	}
	// The forwarders stopped: the count only goes down from here.
	if r.inflight.wait(grace) != nil {
		errs[0] = fmt.Errorf("router: in-flight handlers cancelled (%w), some still running after %v", cause, r.cfg.CloseTimeout)
	} else {
		errs[0] = fmt.Errorf("router: in-flight handlers cancelled: %w", cause)
	}
	r.waitStopped()
	return errors.Join(errs...)
}

// waitStopped waits for Watermill's handler loops to end, which they do as soon as their
// forwarders stopped; it runs after Watermill's Close returned (a loop ends under the handler
// lock that Close holds).
func (r *Router) waitStopped() {
	r.mu.Lock()
	hs := append([]*message.Handler(nil), r.wmHandlers...)
	r.mu.Unlock()
	for _, h := range hs {
		if stopped := h.Stopped(); stopped != nil {
			<-stopped
		}
	}
}

// scopeMiddleware gives each message a context that survives the closing of its subscription
// (so handlers drain during Shutdown), is cancelled when Shutdown stops waiting for handlers to
// finish, and carries the Subscription.
func (r *Router) scopeMiddleware(h message.HandlerFunc) message.HandlerFunc {
	return func(msg *message.Message) ([]*message.Message, error) {
		parent := msg.Context()
		r.mu.Lock()
		sub, ok := r.handlers[message.HandlerNameFromCtx(parent)]
		r.mu.Unlock()

		ctx, cancel := context.WithCancel(context.WithoutCancel(parent))
		stop := context.AfterFunc(r.abort, cancel)
		defer func() {
			stop()
			cancel()
		}()
		if ok {
			ctx = context.WithValue(ctx, subscriptionKey{}, sub)
		}
		msg.SetContext(ctx)
		return h(msg)
	}
}

func (r *Router) subscriberFor(group string, override message.Subscriber) (message.Subscriber, error) {
	if override != nil {
		return override, nil
	}
	if r.cfg.NewSubscriber == nil {
		return r.cfg.Subscriber, nil
	}
	if sub, ok := r.subs[group]; ok {
		return sub, nil
	}
	sub, err := r.cfg.NewSubscriber(group)
	if err != nil {
		return nil, fmt.Errorf("router: creating subscriber for group %q: %w", group, err)
	}
	if sub == nil {
		return nil, fmt.Errorf("router: NewSubscriber returned a nil subscriber for group %q", group)
	}
	r.subs[group] = sub
	return sub, nil
}

type subscriptionKey struct{}

// SubscriptionFromContext returns the Subscription of the handler processing the message whose
// context (or a context derived from it) is ctx.
func SubscriptionFromContext(ctx context.Context) (Subscription, bool) {
	s, ok := ctx.Value(subscriptionKey{}).(Subscription)
	return s, ok
}

// noClosePublisher keeps Watermill's router from closing the shared publisher when one
// publishing handler stops.
type noClosePublisher struct{ message.Publisher }

func (noClosePublisher) Close() error { return nil }
