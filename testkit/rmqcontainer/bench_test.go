package rmqcontainer

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/testcontainers/testcontainers-go/log"

	"github.com/rocketbus/rocketbus/testkit/minirmq"
)

// BenchmarkStartup compares the two ways a test gets a broker: minirmq in process, and the
// same broker in a container through Run (create, start, wait for registration, advertise the
// host address). Each op ends when a client could connect; shutdown is not timed.
//
//	go test -run '^$' -bench Startup -benchtime 10x ./testkit/rmqcontainer/
func BenchmarkStartup(b *testing.B) {
	b.Run("inprocess", func(b *testing.B) {
		for b.Loop() {
			srv, err := minirmq.New(minirmq.WithAddr("127.0.0.1:0"))
			if err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			if err := srv.Close(); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
		}
	})
	b.Run("container", func(b *testing.B) {
		RequireDocker(b)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		image, err := MinirmqImage(ctx) // built once, outside the timed loop
		if err != nil {
			b.Fatal(err)
		}
		b.ResetTimer()
		for b.Loop() {
			c, err := Run(ctx, image, WithLogger(log.NewNoopLogger()))
			if err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			if err := c.Terminate(ctx); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
		}
	})
}

// BenchmarkStartupRealRocketMQ measures Run with the real Java name server and broker (opt-in,
// see TestRunRealRocketMQ): the apache layout's start, registration and advertised-address
// update. The image is built once, outside the timed loop.
func BenchmarkStartupRealRocketMQ(b *testing.B) {
	dist := os.Getenv(envRocketMQDist)
	if dist == "" {
		b.Skipf("set %s to a RocketMQ binary distribution", envRocketMQDist)
	}
	RequireDocker(b)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	dir := b.TempDir()
	realRocketMQContext(b, dir, dist, javaHome(b))
	opts := []Option{WithLogger(log.NewNoopLogger()), WithJVMHeap("256m"), WithJVMOptions(java17Opens...)}
	first, err := Run(ctx, "", append(opts, WithDockerfile(dir, ""), WithKeepImage())...)
	if err != nil {
		b.Fatal(err)
	}
	image := first.Image
	b.Cleanup(func() {
		if err := removeBuiltImage(context.Background(), image); err != nil {
			b.Error(err)
		}
	})
	if err := first.Terminate(ctx); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		c, err := Run(ctx, image, opts...)
		if err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		if err := c.Terminate(ctx); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
}
