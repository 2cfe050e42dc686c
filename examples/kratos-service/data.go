package main

import (
	"context"
	"fmt"
	"sync"

	"github.com/go-kratos/kratos/v2/log"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/rocketbus/rocketbus/kratosbus"
)

// orderRepo is the data layer: orders in memory (a database in a real service) and the
// kratosbus publisher, injected by wire through kratosbus.ProviderSet as a kratosbus.Sender.
type orderRepo struct {
	sender kratosbus.Sender
	topic  string

	mu     sync.Mutex
	orders map[string]*Order
}

// NewOrderRepo is the wire provider of the data layer.
func NewOrderRepo(sender kratosbus.Sender, c *Config) OrderRepo {
	return &orderRepo{sender: sender, topic: c.Topic, orders: map[string]*Order{}}
}

func (r *orderRepo) Place(ctx context.Context, o *Order) error {
	r.mu.Lock()
	if _, dup := r.orders[o.ID]; dup {
		r.mu.Unlock()
		return fmt.Errorf("order %s already exists", o.ID)
	}
	stored := *o
	r.orders[o.ID] = &stored
	r.mu.Unlock()
	// The publisher carries ctx's trace context and Kratos metadata in the message.
	return r.sender.Publish(ctx, r.topic, OrderPlaced{ID: o.ID, Total: o.Total}, kratosbus.WithKeys(o.ID))
}

func (r *orderRepo) Confirm(_ context.Context, id, traceID string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	o, ok := r.orders[id]
	if !ok {
		return fmt.Errorf("confirm %s: %w", id, ErrNotFound)
	}
	o.Status, o.ConfirmedTrace = StatusConfirmed, traceID
	return nil
}

func (r *orderRepo) Get(_ context.Context, id string) (*Order, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	o, ok := r.orders[id]
	if !ok {
		return nil, ErrNotFound
	}
	cp := *o
	return &cp, nil
}

// NewPublisherOptions tells kratosbus.ProviderSet how to build the data layer's publisher.
func NewPublisherOptions(c *Config, tp trace.TracerProvider, prop propagation.TextMapPropagator, logger log.Logger) kratosbus.PublisherOptions {
	return kratosbus.PublisherOptions{
		kratosbus.WithLogger(logger),
		kratosbus.WithNameServer(c.NameServers...),
		kratosbus.WithCodec("json"),
		kratosbus.WithTracerProvider(tp),
		kratosbus.WithPropagator(prop),
	}
}
