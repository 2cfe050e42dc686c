package rmqcontainer

import (
	"context"
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
