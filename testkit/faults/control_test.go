package faults

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/rocketbus/rocketbus/testkit/minirmq"
)

// TestAckCheckDetectsEarlyAck is the negative control of the ack check: a consumer that acks
// every message on arrival and records only half of them (as a consumer acking before its
// work would, once it crashes) must be caught. Without it, a check that never fires would
// look the same as a consumer that never acks early.
func TestAckCheckDetectsEarlyAck(t *testing.T) {
	if raceEnabled && os.Getenv("ROCKETBUS_RACE_BROKER_TESTS") != "1" {
		t.Skip("rocketmq-client-go v2.1.2's push consumer has data races of its own; this runs in make test's race-free pass")
	}
	if os.Getenv(minirmq.EnvNameServer) != "" {
		t.Skip("reads committed offsets through minirmq's inspection; running against an external broker")
	}
	tg := rocketMQTarget(t)
	topic, group := tg.topic(t), newGroup()
	path := filepath.Join(t.TempDir(), "handled")
	led, err := openLedger(path)
	if err != nil {
		t.Fatal(err)
	}
	defer led.Close()
	sub, err := tg.subscriber(t, group, false)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	msgs, err := sub.Subscribe(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	consumed := make(chan struct{})
	go func() {
		defer close(consumed)
		n := 0
		for msg := range msgs {
			msg.Ack()
			var p payload
			if json.Unmarshal(msg.Payload, &p) == nil && n%2 == 0 {
				_ = led.add(p.ID)
			}
			n++
		}
	}()
	check := startAckCheck(t, tg, topic, group, path)
	publishAll(tg.publisher(t), topic, newIDs(200), nil)

	// The client commits offsets every 5 s.
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		check.mu.Lock()
		caught := len(check.violations)
		check.mu.Unlock()
		if caught > 0 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	cancel()
	<-consumed
	if err := sub.Close(); err != nil {
		t.Error(err)
	}
	close(check.stopCh)
	<-check.done
	check.mu.Lock()
	defer check.mu.Unlock()
	t.Logf("ack check caught %d messages acked before they were recorded", len(check.violations))
	if len(check.violations) == 0 {
		t.Fatal("the ack check missed a consumer that acks before handling")
	}
}
