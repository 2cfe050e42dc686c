// Package wiredemo is a data layer wired the way a Kratos service wires it; its test proves
// that kratosbus.ProviderSet builds with wire and that the generated injector works.
package wiredemo

import (
	"context"

	"github.com/rocketbus/rocketbus/kratosbus"
)

// OrderRepo is a data-layer repository that announces the orders it stores.
type OrderRepo struct {
	sender kratosbus.Sender
}

// NewOrderRepo depends on kratosbus.Sender, which kratosbus.ProviderSet binds to *Publisher.
func NewOrderRepo(sender kratosbus.Sender) *OrderRepo { return &OrderRepo{sender: sender} }

// OrderCreated is the event the repository publishes.
type OrderCreated struct {
	ID string `json:"id"`
}

// Create publishes an OrderCreated event.
func (r *OrderRepo) Create(ctx context.Context, id string) error {
	return r.sender.Publish(ctx, "order_created", OrderCreated{ID: id}, kratosbus.WithKeys(id))
}
