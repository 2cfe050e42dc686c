//go:build wireinject

package main

import (
	"github.com/go-kratos/kratos/v2/log"
	"github.com/google/wire"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/rocketbus/rocketbus/kratosbus"
)

// wireApp is the injector; `go generate` (wire) writes its implementation to wire_gen.go.
func wireApp(*Config, log.Logger, trace.TracerProvider, propagation.TextMapPropagator) (*service, func(), error) {
	panic(wire.Build(kratosbus.ProviderSet, NewPublisherOptions, NewOrderRepo, NewOrderUsecase, NewHTTPServer, NewBusServer, newService))
}
