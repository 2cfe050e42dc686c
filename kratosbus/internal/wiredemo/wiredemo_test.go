package wiredemo_test

import (
	"context"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/pubsub/gochannel"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/rocketbus/rocketbus/kratosbus"
	"github.com/rocketbus/rocketbus/kratosbus/internal/wiredemo"
	"github.com/rocketbus/rocketbus/rocketmq"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.IgnoreTopFunction("github.com/patrickmn/go-cache.(*janitor).Run"))
}

func TestWireInjector(t *testing.T) {
	gc := gochannel.NewGoChannel(gochannel.Config{}, watermill.NopLogger{})
	defer gc.Close()
	events, err := gc.Subscribe(context.Background(), "order_created")
	require.NoError(t, err)

	repo, cleanup, err := wiredemo.InitOrderRepo(kratosbus.PublisherOptions{kratosbus.WithBackend(gc, nil)})
	require.NoError(t, err)
	defer cleanup()
	require.NoError(t, repo.Create(context.Background(), "o-9"))

	select {
	case m := <-events:
		m.Ack()
		assert.JSONEq(t, `{"id":"o-9"}`, string(m.Payload))
		assert.Equal(t, "o-9", m.Metadata.Get(rocketmq.MetadataKeys))
	case <-time.After(10 * time.Second):
		t.Fatal("no event published")
	}

	_, _, err = wiredemo.InitOrderRepo(nil)
	assert.ErrorContains(t, err, "no backend")
}
