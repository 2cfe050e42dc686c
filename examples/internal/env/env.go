// Package env gives every example the same start: flags for the broker, an embedded minirmq
// when no name server is named, and a printer that handlers share.
package env

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/apache/rocketmq-client-go/v2/rlog"

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
