package main

import (
	"context"
	"errors"
	"fmt"

	"go.opentelemetry.io/otel/trace"
)

// Order is the business object of the service.
type Order struct {
	ID     string `json:"id"`
	Total  int    `json:"total"`
	Status string `json:"status"`
	// PlacedTrace and ConfirmedTrace are the trace ids of the request that placed the order and
	// of the message handler that confirmed it: one trace spans both.
	PlacedTrace    string `json:"placed_trace,omitempty"`
	ConfirmedTrace string `json:"confirmed_trace,omitempty"`
}

// OrderPlaced is the event the data layer publishes for a new order.
type OrderPlaced struct {
	ID    string `json:"id"`
	Total int    `json:"total"`
}

// Order statuses.
const (
	StatusPlaced    = "placed"
	StatusConfirmed = "confirmed"
)

// ErrNotFound is returned for unknown orders.
var ErrNotFound = errors.New("order not found")

// OrderRepo is the data layer the use case needs (implemented in data.go).
type OrderRepo interface {
	// Place stores a new order and announces it with an OrderPlaced event.
	Place(ctx context.Context, o *Order) error
	// Confirm marks an order confirmed.
	Confirm(ctx context.Context, id, traceID string) error
	// Get returns an order.
	Get(ctx context.Context, id string) (*Order, error)
}

// OrderUsecase holds the business rules, independent of HTTP and of messaging.
type OrderUsecase struct {
	repo OrderRepo
}

// NewOrderUsecase is the wire provider of the use case.
func NewOrderUsecase(repo OrderRepo) *OrderUsecase { return &OrderUsecase{repo: repo} }

// Place validates and places an order; the confirmation happens asynchronously.
func (uc *OrderUsecase) Place(ctx context.Context, id string, total int) (*Order, error) {
	if id == "" || total <= 0 {
		return nil, fmt.Errorf("an order needs an id and a positive total, got %q and %d", id, total)
	}
	o := &Order{ID: id, Total: total, Status: StatusPlaced, PlacedTrace: trace.SpanContextFromContext(ctx).TraceID().String()}
	if err := uc.repo.Place(ctx, o); err != nil {
		return nil, err
	}
	return o, nil
}

// Confirm handles an OrderPlaced event (reserving stock, charging... in a real service).
func (uc *OrderUsecase) Confirm(ctx context.Context, ev *OrderPlaced) error {
	return uc.repo.Confirm(ctx, ev.ID, trace.SpanContextFromContext(ctx).TraceID().String())
}

// Get returns an order.
func (uc *OrderUsecase) Get(ctx context.Context, id string) (*Order, error) {
	return uc.repo.Get(ctx, id)
}
