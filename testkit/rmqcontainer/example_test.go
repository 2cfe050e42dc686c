package rmqcontainer_test

import (
	"context"
	"fmt"
	"log"

	"github.com/rocketbus/rocketbus/testkit/rmqcontainer"
)

// Run starts RocketMQ in a container; clients use NameServer as their name server address.
// Where testcontainers' reaper image cannot be pulled, set TESTCONTAINERS_RYUK_DISABLED=true
// and always Terminate.
func ExampleRun() {
	ctx := context.Background()
	c, err := rmqcontainer.Run(ctx, "apache/rocketmq:5.3.1",
		rmqcontainer.WithJVMHeap("512m"),
		rmqcontainer.WithBrokerConfig(map[string]string{"defaultTopicQueueNums": "4"}),
	)
	if err != nil {
		log.Fatal(err)
	}
	defer func() {
		if err := c.Terminate(ctx); err != nil {
			log.Print(err)
		}
	}()
	nameServer, err := c.NameServer(ctx)
	if err != nil {
		log.Fatal(err)
	}
	// Pass it to producer.WithNameServer / consumer.WithNameServer, or rocketmq.Config.
	fmt.Println("name server:", nameServer)
}

// MinirmqImage builds cmd/minirmq into a local FROM-scratch image (nothing is pulled), which
// Run detects as single-port.
func ExampleMinirmqImage() {
	ctx := context.Background()
	image, err := rmqcontainer.MinirmqImage(ctx)
	if err != nil {
		log.Fatal(err)
	}
	c, err := rmqcontainer.Run(ctx, image)
	if err != nil {
		log.Fatal(err)
	}
	defer func() { _ = c.Terminate(ctx) }()
	nameServer, _ := c.NameServer(ctx)
	fmt.Println("name server:", nameServer)
}
