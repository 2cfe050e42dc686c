//go:build wireinject

package wiredemo

import (
	"github.com/google/wire"

	"github.com/rocketbus/rocketbus/kratosbus"
)

// InitOrderRepo is the injector wire generates in wire_gen.go.
func InitOrderRepo(opts kratosbus.PublisherOptions) (*OrderRepo, func(), error) {
	panic(wire.Build(kratosbus.ProviderSet, NewOrderRepo))
}
