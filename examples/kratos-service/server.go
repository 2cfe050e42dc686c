package main

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/go-kratos/kratos/v2"
	kerrors "github.com/go-kratos/kratos/v2/errors"
	"github.com/go-kratos/kratos/v2/log"
	"github.com/go-kratos/kratos/v2/middleware/recovery"
	"github.com/go-kratos/kratos/v2/middleware/tracing"
	khttp "github.com/go-kratos/kratos/v2/transport/http"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/rocketbus/rocketbus/kratosbus"
)

// Config is the service's configuration (conf.Bootstrap in a generated Kratos layout).
type Config struct {
	HTTPAddr    string
	NameServers []string
	Topic       string
	Group       string
}

// NewHTTPServer serves POST /orders and GET /orders/{id} in Kratos' HTTP server, with
// Kratos' tracing middleware starting the trace of each request.
func NewHTTPServer(c *Config, uc *OrderUsecase, tp trace.TracerProvider, prop propagation.TextMapPropagator) *khttp.Server {
	srv := khttp.NewServer(khttp.Address(c.HTTPAddr), khttp.Timeout(10*time.Second),
		khttp.Middleware(recovery.Recovery(), tracing.Server(tracing.WithTracerProvider(tp), tracing.WithPropagator(prop))))
	route := srv.Route("/")
	route.POST("/orders", func(ctx khttp.Context) error {
		var in OrderPlaced
		if err := ctx.Bind(&in); err != nil {
			return err
		}
		h := ctx.Middleware(func(c context.Context, req any) (any, error) {
			o := req.(*OrderPlaced)
			order, err := uc.Place(c, o.ID, o.Total)
			if err != nil {
				return nil, kerrors.BadRequest("ORDER_INVALID", err.Error())
			}
			return order, nil
		})
		out, err := h(ctx, &in)
		if err != nil {
			return err
		}
		return ctx.Result(http.StatusAccepted, out)
	})
	route.GET("/orders/{id}", func(ctx khttp.Context) error {
		h := ctx.Middleware(func(c context.Context, req any) (any, error) {
			o, err := uc.Get(c, req.(string))
			if errors.Is(err, ErrNotFound) {
				return nil, kerrors.NotFound("ORDER_NOT_FOUND", err.Error())
			}
			return o, err
		})
		out, err := h(ctx, ctx.Vars().Get("id"))
		if err != nil {
			return err
		}
		return ctx.Result(http.StatusOK, out)
	})
	return srv
}

// NewBusServer is the kratosbus server: the message handlers of the service, with the same
// Kratos middleware as the HTTP server, so the consumer continues the producer's trace. The
// server owns a RocketMQ producer from the start: the cleanup stops it (the Kratos app stops
// it too when it ran; Stop is idempotent), and a failed registration stops it at once.
func NewBusServer(c *Config, uc *OrderUsecase, tp trace.TracerProvider, prop propagation.TextMapPropagator, logger log.Logger) (*kratosbus.Server, func(), error) {
	srv, err := kratosbus.NewServer(
		kratosbus.WithNameServer(c.NameServers...),
		kratosbus.WithCodec("json"),
		kratosbus.WithTracerProvider(tp),
		kratosbus.WithPropagator(prop),
		kratosbus.WithLogger(logger),
		kratosbus.WithMiddleware(recovery.Recovery(), tracing.Server(tracing.WithTracerProvider(tp), tracing.WithPropagator(prop))),
	)
	if err != nil {
		return nil, nil, err
	}
	cleanup := func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := srv.Stop(ctx); err != nil {
			_ = logger.Log(log.LevelError, "msg", "stopping the bus server", "err", err)
		}
	}
	err = kratosbus.RegisterSubscriber(srv, c.Topic, c.Group,
		func(ctx context.Context, topic string, headers kratosbus.Headers, ev *OrderPlaced) error {
			return uc.Confirm(ctx, ev)
		})
	if err != nil {
		cleanup()
		return nil, nil, err
	}
	return srv, cleanup, nil
}

// service is the assembled app with its servers (the demo needs their addresses and state).
type service struct {
	App  *kratos.App
	HTTP *khttp.Server
	Bus  *kratosbus.Server
}

// newService assembles the Kratos app from its servers.
func newService(logger log.Logger, hs *khttp.Server, bs *kratosbus.Server) *service {
	app := kratos.New(kratos.Name("orders"), kratos.Logger(logger), kratos.Server(hs, bs))
	return &service{App: app, HTTP: hs, Bus: bs}
}
