package rocketmq

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestPublisherConfigDefaultsAndValidate(t *testing.T) {
	c := PublisherConfig{NameServers: []string{"127.0.0.1:9876"}}
	c.setDefaults()
	require.NoError(t, c.Validate())
	assert.Equal(t, 2, c.Retries)
	assert.Equal(t, 3*time.Second, c.SendTimeout)
	assert.NotNil(t, c.Marshaler)
	assert.Equal(t, DefaultMaxMessageSize, c.MaxMessageSize)

	bad := map[string]PublisherConfig{
		"no name servers":  {},
		"bad address":      {NameServers: []string{"localhost"}},
		"bad group":        {NameServers: []string{"a:1"}, GroupName: "has space"},
		"half credentials": {NameServers: []string{"a:1"}, GroupName: "g", Credentials: credentials("ak", "")},
	}
	for name, c := range bad {
		c.setDefaults()
		if name == "bad group" {
			c.GroupName = "has space"
		}
		assert.Error(t, c.Validate(), name)
	}
}

func TestSubscriberConfigDefaultsAndValidate(t *testing.T) {
	c := SubscriberConfig{NameServers: []string{"127.0.0.1:9876"}}
	c.setDefaults()
	require.NoError(t, c.Validate())
	assert.Equal(t, "rocketbus_orders", c.GroupFunc("orders"))
	assert.Equal(t, "*", c.TagFilter)
	assert.Equal(t, 30*time.Second, c.CloseTimeout)

	bad := map[string]func(*SubscriberConfig){
		"broadcast broker retry": func(c *SubscriberConfig) { c.Model = Broadcasting; c.NackMode = NackBrokerRetry },
		"timestamp without time": func(c *SubscriberConfig) { c.ConsumeFrom = ConsumeFromTimestamp },
		"both filters":           func(c *SubscriberConfig) { c.SQLFilter = "a > 1" },
		"unknown model":          func(c *SubscriberConfig) { c.Model = 7 },
		"negative reconsume":     func(c *SubscriberConfig) { c.MaxReconsumeTimes = -1 },
		"pull batch":             func(c *SubscriberConfig) { c.PullBatchSize = 5000 },
		"consume batch":          func(c *SubscriberConfig) { c.ConsumeBatchSize = -1 },
		"no name servers":        func(c *SubscriberConfig) { c.NameServers = nil },
	}
	for name, mutate := range bad {
		c := SubscriberConfig{NameServers: []string{"127.0.0.1:9876"}}
		c.setDefaults()
		mutate(&c)
		assert.Error(t, c.Validate(), name)
	}
}
