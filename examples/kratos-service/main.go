// Command kratos-service is a Kratos micro-service whose HTTP API places orders and whose
// kratosbus server confirms them from RocketMQ, wired with wire the way a Kratos layout is:
//
//	HTTP POST /orders -> usecase -> data layer (kratosbus.Publisher) -> RocketMQ
//	  -> kratosbus.Server (Kratos middleware) -> usecase.Confirm -> GET /orders/{id} says "confirmed"
//
// One OpenTelemetry trace covers the HTTP request, the publish and the message handler; the
// service prints every finished span (a real one would export them with OTLP).
//
//	go run ./examples/kratos-service -demo        # place one order through its own API, then exit
//	go run ./examples/kratos-service              # serve on :8000 until Ctrl-C
//	curl -H 'Content-Type: application/json' -d '{"id":"o-1","total":4200}' localhost:8000/orders
//	curl localhost:8000/orders/o-1
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/go-kratos/kratos/v2/log"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/rocketbus/rocketbus/examples/internal/env"
)

func main() {
	if err := run(context.Background(), os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "kratos-service:", err)
		os.Exit(1)
	}
}

// spanPrinter prints each finished span as one line and remembers it for the demo's summary.
type spanPrinter struct {
	out   *env.Printer
	mu    sync.Mutex
	spans []sdktrace.ReadOnlySpan
}

func (p *spanPrinter) ExportSpans(_ context.Context, spans []sdktrace.ReadOnlySpan) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, s := range spans {
		p.out.Printf("span: trace %s  %-8s %s", s.SpanContext().TraceID(), s.SpanKind(), s.Name())
		p.spans = append(p.spans, s)
	}
	return nil
}

func (p *spanPrinter) Shutdown(context.Context) error { return nil }

func (p *spanPrinter) names(traceID string) []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var names []string
	for _, s := range p.spans {
		if s.SpanContext().TraceID().String() == traceID {
			names = append(names, s.Name())
		}
	}
	return names
}

func run(ctx context.Context, args []string, stdout io.Writer) error {
	var f env.Flags
	var httpAddr string
	var demo bool
	fs := env.NewFlagSet("kratos-service", stdout, &f)
	fs.StringVar(&httpAddr, "http", "127.0.0.1:8000", "HTTP listen address")
	fs.BoolVar(&demo, "demo", false, "place one order through the service's own HTTP API, wait until the message handler confirmed it, and exit")
	if err := fs.Parse(args); err != nil {
		return err
	}
	out := env.NewPrinter(stdout)
	broker, err := env.Connect(f, out)
	if err != nil {
		return err
	}
	defer broker.Close()

	spans := &spanPrinter{out: out}
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(spans))
	defer tp.Shutdown(context.Background()) //nolint:errcheck // the exporter cannot fail
	prop := propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})
	// The demo keeps to its own lines; a serving process logs from the info level up.
	level := log.LevelInfo
	if demo {
		level = log.LevelWarn
	}
	logger := log.NewFilter(log.NewStdLogger(stdout), log.FilterLevel(level))

	conf := &Config{HTTPAddr: httpAddr, NameServers: broker.NameServers, Topic: f.Name("order_placed"), Group: f.Name("order_confirmation")}
	svc, cleanup, err := wireApp(conf, logger, tp, prop)
	if err != nil {
		return err
	}
	defer cleanup()
	endpoint, err := svc.HTTP.Endpoint() // listens now, so the port is known before the app runs
	if err != nil {
		return err
	}
	base := "http://" + endpoint.Host
	out.Printf("HTTP API on %s, consuming %s in group %s", base, conf.Topic, conf.Group)

	appErr := make(chan error, 1)
	go func() { appErr <- svc.App.Run() }()
	if !demo {
		return <-appErr // until SIGINT or SIGTERM
	}

	var demoErr error
	select {
	case <-svc.Bus.Router().Running():
		demoErr = placeOrder(ctx, f.Timeout, base, out, spans)
	case err := <-appErr:
		return fmt.Errorf("the app stopped before it ran: %w", err)
	}
	stopErr := svc.App.Stop()
	return errors.Join(demoErr, stopErr, <-appErr)
}

// placeOrder is the demo: POST an order, poll until the message handler confirmed it, and
// check that the request and the handler ran in one trace.
func placeOrder(ctx context.Context, timeout time.Duration, base string, out *env.Printer, spans *spanPrinter) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	// No keep-alive: no idle connection outlives the demo.
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	call := func(method, url string, body []byte, wantStatus int) (*Order, error) {
		req, err := http.NewRequestWithContext(ctx, method, url, bytes.NewReader(body))
		if err != nil {
			return nil, err
		}
		req.Header.Set("Content-Type", "application/json")
		resp, err := client.Do(req)
		if err != nil {
			return nil, err
		}
		defer resp.Body.Close()
		data, err := io.ReadAll(resp.Body)
		if err != nil {
			return nil, err
		}
		if resp.StatusCode != wantStatus {
			return nil, fmt.Errorf("%s %s: %s: %s", method, url, resp.Status, data)
		}
		var o Order
		return &o, json.Unmarshal(data, &o)
	}

	placed, err := call(http.MethodPost, base+"/orders", []byte(`{"id":"o-1001","total":4200}`), http.StatusAccepted)
	if err != nil {
		return err
	}
	out.Printf("POST /orders -> order %s %s (request trace %s)", placed.ID, placed.Status, placed.PlacedTrace)
	for {
		o, err := call(http.MethodGet, base+"/orders/"+placed.ID, nil, http.StatusOK)
		if err != nil {
			return err
		}
		if o.Status == StatusConfirmed {
			out.Printf("GET /orders/%s -> %s by the message handler (handler trace %s)", o.ID, o.Status, o.ConfirmedTrace)
			if o.ConfirmedTrace != o.PlacedTrace {
				return fmt.Errorf("the handler ran in trace %s, not in the request's trace %s", o.ConfirmedTrace, o.PlacedTrace)
			}
			out.Printf("one trace from the HTTP request to the message handler: %s", strings.Join(spans.names(o.PlacedTrace), " | "))
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("order %s not confirmed: %w", placed.ID, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}
