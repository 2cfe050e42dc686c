package middleware_test

import (
	"context"
	"errors"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rocketbus/rocketbus/middleware"
	"github.com/rocketbus/rocketbus/rocketmq"
	"github.com/rocketbus/rocketbus/router"
	"github.com/rocketbus/rocketbus/testkit/minirmq"
)

// TestBrokerRetryOnRocketMQ runs the middleware against a broker (minirmq, or the one in
// $ROCKETMQ_NAMESRV): a failed message comes back from %RETRY%<group> with its reconsume count,
// a permanent failure goes to %DLQ%<group> without a second delivery, and so does a message
// that failed MaxReconsumeTimes retries.
func TestBrokerRetryOnRocketMQ(t *testing.T) {
	if raceEnabled {
		t.Skip("rocketmq-client-go v2.1.2 has data races of its own; run without -race")
	}
	var srv *minirmq.Server
	var ns string
	if env := os.Getenv(minirmq.EnvNameServer); env != "" {
		ns = env
	} else {
		// The time scale shortens delay level 1 (1 s) so the retry comes back quickly.
		srv = minirmq.Run(t, minirmq.WithTimeScale(0.05))
		ns = srv.Addr()
	}
	servers := strings.Split(ns, ";")
	suffix := watermill.NewShortUUID()
	topic, group := "mw-retry-"+suffix, "mw-retry-g-"+suffix

	pub, err := rocketmq.NewPublisher(rocketmq.PublisherConfig{NameServers: servers}, watermill.NopLogger{})
	require.NoError(t, err)
	defer pub.Close()
	subConfig := rocketmq.SubscriberConfig{
		NameServers:     servers,
		GroupFunc:       func(string) string { return group },
		ConsumeFrom:     rocketmq.ConsumeFromFirst,
		AutoCreateTopic: true,
		NackMode:        rocketmq.NackBrokerRetry,
		CloseTimeout:    5 * time.Second,
	}
	// The broker creates %RETRY%<group> on the group's first heartbeat, after the first
	// consumer looked its route up; that consumer would only find the retry topic at its next
	// route refresh (30 s). A short-lived consumer of the group makes the topic exist first.
	warm, err := rocketmq.NewSubscriber(subConfig, watermill.NopLogger{})
	require.NoError(t, err)
	warmCtx, cancelWarm := context.WithCancel(context.Background())
	_, err = warm.Subscribe(warmCtx, topic)
	require.NoError(t, err)
	cancelWarm()
	require.NoError(t, warm.Close())

	sub, err := rocketmq.NewSubscriber(subConfig, watermill.NopLogger{})
	require.NoError(t, err)
	defer sub.Close()

	retry, err := middleware.BrokerRetry{
		ReconsumeTimes:    rocketmq.ReconsumeTimesFromCtx,
		MaxReconsumeTimes: 1,
		DelayLevel:        func(int32) int { return 1 },
	}.Middleware()
	require.NoError(t, err)
	r, err := router.New(router.Config{
		Publisher:    pub,
		Subscriber:   sub,
		Middleware:   []message.HandlerMiddleware{retry},
		CloseTimeout: 5 * time.Second,
	})
	require.NoError(t, err)

	type attempt struct {
		id        string
		reconsume int32
	}
	var mu sync.Mutex
	var attempts []attempt
	succeeded := make(chan struct{})
	exhausted := make(chan struct{})
	require.NoError(t, router.Subscribe(r, topic, func(ctx context.Context, e *event) error {
		n, _ := rocketmq.ReconsumeTimesFromCtx(ctx)
		mu.Lock()
		attempts = append(attempts, attempt{e.ID, n})
		mu.Unlock()
		switch {
		case e.ID == "poison":
			return middleware.Permanent(errors.New("never valid"))
		case e.ID == "always":
			if n == 1 {
				close(exhausted)
			}
			return errors.New("still failing")
		case n == 0:
			return errors.New("transient")
		default:
			close(succeeded)
			return nil
		}
	}, router.WithGroup(group)))
	runRouter(t, r)

	rp, err := router.NewPublisher(pub, nil)
	require.NoError(t, err)
	require.NoError(t, rp.Publish(context.Background(), topic, event{ID: "poison"}))
	require.NoError(t, rp.Publish(context.Background(), topic, event{ID: "flaky"}))
	require.NoError(t, rp.Publish(context.Background(), topic, event{ID: "always"}))
	wait(t, succeeded, "the broker retry of the flaky message")
	wait(t, exhausted, "the last retry of the failing message")

	if srv != nil {
		require.Eventually(t, func() bool { return len(srv.Messages("%DLQ%"+group)) == 2 }, 10*time.Second, 10*time.Millisecond)
		var bodies []string
		for _, m := range srv.Messages("%DLQ%" + group) {
			bodies = append(bodies, string(m.Body))
		}
		assert.ElementsMatch(t, []string{`{"id":"poison"}`, `{"id":"always"}`}, bodies,
			"the permanent failure and the one out of retries are dead letters")
	}
	mu.Lock()
	defer mu.Unlock()
	assert.ElementsMatch(t, []attempt{{"poison", 0}, {"flaky", 0}, {"flaky", 1}, {"always", 0}, {"always", 1}}, attempts,
		"the poison message is handled once; the others come back once from the broker")
}
