// Package env gives every example the same start: flags for the broker, an embedded minirmq
// when no name server is named, a printer that handlers share, RocketMQ publishers and
// per-group subscribers on the broker, and a router run in the background until Stop.
package env

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/apache/rocketmq-client-go/v2/rlog"

	"github.com/rocketbus/rocketbus/rocketmq"
	"github.com/rocketbus/rocketbus/router"
	"github.com/rocketbus/rocketbus/testkit/minirmq"
)

func init() {
	// rocketmq-client-go logs every rebalance and pull at info level; an example's own lines
	// would drown in them.
	rlog.SetLogLevel("error")
}

// Flags are the options every example accepts.
type Flags struct {
	// NameServer is -namesrv: a RocketMQ name server (host:port, several separated by ';').
	// Empty starts an embedded minirmq.
	NameServer string
	// Prefix is -prefix: prepended to every topic and group, so that runs against a shared
	// broker (whose state persists) do not see each other's messages.
	Prefix string
	// Timeout is -timeout: the whole scenario must finish within it.
	Timeout time.Duration
}

// NewFlagSet returns a flag set with the common flags bound to f; examples add their own flags
// before parsing.
func NewFlagSet(name string, out io.Writer, f *Flags) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(out)
	fs.StringVar(&f.NameServer, "namesrv", "", "RocketMQ name server host:port (empty: start an embedded minirmq broker in this process)")
	fs.StringVar(&f.Prefix, "prefix", "example", "prefix of the topic and group names")
	fs.DurationVar(&f.Timeout, "timeout", 2*time.Minute, "give up when the scenario has not finished by then")
	return fs
}

// Name returns prefix_name, a topic or group name RocketMQ accepts.
func (f Flags) Name(name string) string {
	if f.Prefix == "" {
		return name
	}
	return f.Prefix + "_" + name
}

// Broker is the RocketMQ an example runs on.
type Broker struct {
	// NameServers are the addresses to give publishers and subscribers.
	NameServers []string
	// Embedded is the in-process broker, nil with -namesrv.
	Embedded *minirmq.Server
}

// Connect returns the broker named by f.NameServer, or starts an embedded minirmq with opts
// (which only apply to it) and prints where it listens.
func Connect(f Flags, p *Printer, opts ...minirmq.Option) (*Broker, error) {
	if f.NameServer != "" {
		var ns []string
		for _, s := range strings.Split(f.NameServer, ";") {
			if s = strings.TrimSpace(s); s != "" {
				ns = append(ns, s)
			}
		}
		if len(ns) == 0 {
			return nil, errors.New("-namesrv has no address")
		}
		p.Printf("using the RocketMQ name server at %s", strings.Join(ns, ";"))
		return &Broker{NameServers: ns}, nil
	}
	srv, err := minirmq.New(opts...)
	if err != nil {
		return nil, fmt.Errorf("start the embedded broker: %w", err)
	}
	p.Printf("embedded RocketMQ broker (minirmq) listening on %s", srv.Addr())
	return &Broker{NameServers: []string{srv.Addr()}, Embedded: srv}, nil
}

// Close stops the embedded broker, if any.
func (b *Broker) Close() error {
	if b.Embedded == nil {
		return nil
	}
	return b.Embedded.Close()
}

// Session is what an example runs in: its deadline, its printer and its broker.
type Session struct {
	// Ctx ends when the -timeout passed.
	Ctx context.Context
	// Out prints the example's lines.
	Out *Printer
	// Broker is the RocketMQ the example uses.
	Broker *Broker

	cancel context.CancelFunc
}

// Open starts a session: a context bounded by f.Timeout, a Printer on stdout, and the broker
// Connect returns for f and opts.
func Open(ctx context.Context, f Flags, stdout io.Writer, opts ...minirmq.Option) (*Session, error) {
	ctx, cancel := context.WithTimeout(ctx, f.Timeout)
	out := NewPrinter(stdout)
	broker, err := Connect(f, out, opts...)
	if err != nil {
		cancel()
		return nil, err
	}
	return &Session{Ctx: ctx, Out: out, Broker: broker, cancel: cancel}, nil
}

// Close stops the embedded broker, if any, and releases the deadline.
func (s *Session) Close() error {
	defer s.cancel()
	return s.Broker.Close()
}

// Printer writes whole lines to one writer from many goroutines (handlers run concurrently).
type Printer struct {
	mu sync.Mutex
	w  io.Writer
}

// NewPrinter returns a Printer writing to w.
func NewPrinter(w io.Writer) *Printer { return &Printer{w: w} }

// Printf writes one line.
func (p *Printer) Printf(format string, args ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Fprintf(p.w, format+"\n", args...)
}

// NewPublisher returns a RocketMQ publisher on the broker.
func (b *Broker) NewPublisher() (*rocketmq.Publisher, error) {
	return rocketmq.NewPublisher(rocketmq.PublisherConfig{NameServers: b.NameServers}, watermill.NopLogger{})
}

// Subscribers is a router.Config NewSubscriber on the broker: one RocketMQ subscriber per
// consumer group, reading a new group's topics from their first message (the examples publish
// around the time they subscribe) and creating topics on subscription. adjust changes each
// subscriber's config, for example to make it orderly.
func (b *Broker) Subscribers(adjust ...func(*rocketmq.SubscriberConfig)) func(group string) (message.Subscriber, error) {
	return func(group string) (message.Subscriber, error) {
		cfg := rocketmq.SubscriberConfig{
			NameServers:     b.NameServers,
			GroupFunc:       func(string) string { return group },
			ConsumeFrom:     rocketmq.ConsumeFromFirst,
			AutoCreateTopic: true,
		}
		for _, f := range adjust {
			f(&cfg)
		}
		return rocketmq.NewSubscriber(cfg, watermill.NopLogger{})
	}
}

// RunningRouter is a router that Start runs in the background.
type RunningRouter struct {
	*router.Router
	done chan struct{}
	err  error // Run's result, set before done is closed
}

// Start runs r until ctx ends or Stop, and returns once its handlers are subscribed, or Run's
// error when it fails before.
func Start(ctx context.Context, r *router.Router) (*RunningRouter, error) {
	rr := &RunningRouter{Router: r, done: make(chan struct{})}
	go func() {
		rr.err = r.Run(ctx)
		close(rr.done)
	}()
	select {
	case <-r.Running():
		return rr, nil
	case <-rr.done:
		return nil, errors.Join(fmt.Errorf("router: %w", rr.err), r.Close())
	}
}

// Done is closed when Run returned, which before Stop means the router stopped early.
func (rr *RunningRouter) Done() <-chan struct{} { return rr.done }

// Err is Run's result once Done is closed.
func (rr *RunningRouter) Err() error {
	select {
	case <-rr.done:
		return rr.err
	default:
		return nil
	}
}

// Stop shuts the router down, letting in-flight handlers finish for up to 30 s, waits for Run
// and returns waitErr (why the scenario stopped waiting, nil when it completed) joined with
// Shutdown's error and, unless waitErr already explains it, Run's.
func (rr *RunningRouter) Stop(waitErr error) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := errors.Join(waitErr, rr.Shutdown(ctx))
	<-rr.done
	if rr.err != nil && waitErr == nil {
		err = errors.Join(err, rr.err)
	}
	return err
}

// StopAfter waits until done is closed (the scenario completed), the router stopped early or
// ctx ended, then stops the router. what says what done stands for, in the error of a scenario
// that did not complete.
func (rr *RunningRouter) StopAfter(ctx context.Context, done <-chan struct{}, what string) error {
	var waitErr error
	select {
	case <-done:
	case <-rr.done:
		waitErr = fmt.Errorf("router stopped before %s: %w", what, rr.err)
	case <-ctx.Done():
		waitErr = fmt.Errorf("%s did not happen in time: %w", what, ctx.Err())
	}
	return rr.Stop(waitErr)
}
