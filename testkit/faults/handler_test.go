package faults

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	wmw "github.com/ThreeDotsLabs/watermill/message/router/middleware"

	"github.com/rocketbus/rocketbus/middleware"
	"github.com/rocketbus/rocketbus/rocketmq"
)

// handlerN is the number of messages of the handler failure cases.
const handlerN = 600

// behaviour is what a handler does with a message on a given attempt.
type behaviour int

const (
	succeed behaviour = iota
	panicOnce
	failTwice
	alwaysFail
	alwaysPanic
	permanent
)

// indexOf is the position of an id made by newIDs.
func indexOf(id string) int {
	n, _ := strconv.Atoi(id[len(id)-5:])
	return n
}

// attempts counts handler runs per id.
type attempts struct {
	mu sync.Mutex
	n  map[string]int
}

func (a *attempts) next(id string) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.n == nil {
		a.n = map[string]int{}
	}
	a.n[id]++
	return a.n[id]
}

var errHandler = errors.New("handler failed on purpose")

// act runs behaviour b on attempt n (1-based).
func act(b behaviour, n int) error {
	switch {
	case b == panicOnce && n == 1, b == alwaysPanic:
		panic(fmt.Sprintf("handler panics on purpose (attempt %d)", n))
	case b == failTwice && n <= 2, b == alwaysFail:
		return fmt.Errorf("attempt %d: %w", n, errHandler)
	case b == permanent:
		return middleware.Permanent(errHandler)
	}
	return nil
}

// TestHandlerPanicsAndErrors runs Watermill's PoisonQueue, Retry and Recoverer around a
// handler that panics once for every tenth message, fails twice for another tenth, and
// always fails or always panics for one in 25 each: the first two kinds must end handled,
// the last two in the poison queue, which a second consumer reads and records.
func TestHandlerPanicsAndErrors(t *testing.T) {
	const caseName = "handler panics and errors (Recoverer, Retry, PoisonQueue)"
	eachTarget(t, caseName, func(t *testing.T, tg *target) {
		topic, poisonTopic, group := tg.topic(t), tg.topic(t), newGroup()
		dir := t.TempDir()
		path, poisonPath := filepath.Join(dir, "handled"), filepath.Join(dir, "poisoned")
		kind := func(id string) behaviour {
			switch i := indexOf(id); {
			case i%10 == 1:
				return panicOnce
			case i%10 == 2:
				return failTwice
			case i%25 == 3:
				return alwaysFail
			case i%25 == 4:
				return alwaysPanic
			}
			return succeed
		}
		poison, err := wmw.PoisonQueue(tg.publisher(t), poisonTopic)
		if err != nil {
			t.Fatal(err)
		}
		var tries attempts
		startConsumer(t, tg, topic, group, path, consumerOptions{
			middleware: []message.HandlerMiddleware{
				poison,
				wmw.Retry{MaxRetries: 2, InitialInterval: time.Millisecond}.Middleware,
				wmw.Recoverer,
			},
			handle: func(_ context.Context, id string) error { return act(kind(id), tries.next(id)) },
		})
		startConsumer(t, tg, poisonTopic, newGroup(), poisonPath, consumerOptions{})
		res := publishAll(tg.publisher(t), topic, newIDs(handlerN), nil)
		dead := func() map[string]bool {
			got, err := readLedger(poisonPath)
			if err != nil {
				t.Fatal(err)
			}
			out := map[string]bool{}
			for id := range got {
				out[id] = true
			}
			return out
		}
		waitHandled(t, path, res.okIDs, dead, 90*time.Second)
		finish(t, caseName, tg.name, res, path, dead(), "")
		checkOutcomes(t, res.okIDs(), path, dead(), func(id string) bool {
			k := kind(id)
			return k == alwaysFail || k == alwaysPanic
		})
	})
}

// checkOutcomes checks that the messages meant to fail for good are dead-lettered and not
// handled, and that the others are handled.
func checkOutcomes(t *testing.T, ids []string, path string, dead map[string]bool, mustDie func(id string) bool) {
	t.Helper()
	got, err := readLedger(path)
	if err != nil {
		t.Fatal(err)
	}
	var wrong []string
	for _, id := range ids {
		switch {
		case mustDie(id) && (got[id] > 0 || !dead[id]):
			wrong = append(wrong, id+" should be dead-lettered only")
		case !mustDie(id) && got[id] == 0:
			wrong = append(wrong, id+" should be handled")
		}
	}
	if len(wrong) > 0 {
		t.Errorf("%d messages ended in the wrong place, e.g. %v", len(wrong), wrong[:min(10, len(wrong))])
	}
}

// TestBrokerRetryToDLQ uses RocketMQ's own retry: BrokerRetry turns a handler error into a
// broker redelivery through %RETRY%<group> (the subscriber in NackBrokerRetry mode) and, after
// MaxReconsumeTimes or for a Permanent error, into a dead letter in %DLQ%<group>. Messages
// failing or panicking once must end handled; those always failing or permanently failing
// must end in the DLQ, read from minirmq's store (or, on a real broker, by a consumer of it).
func TestBrokerRetryToDLQ(t *testing.T) {
	const caseName = "handler errors (RocketMQ retry to DLQ)"
	eachTarget(t, caseName, func(t *testing.T, tg *target) {
		if tg.name != "rocketmq" {
			skipCase(t, caseName, tg.name, "broker retries through %RETRY% and %DLQ% topics are RocketMQ's; the other backends are covered by Watermill's Retry and PoisonQueue")
		}
		topic, group := tg.topic(t), newGroup()
		dir := t.TempDir()
		path, dlqPath := filepath.Join(dir, "handled"), filepath.Join(dir, "dead")
		kind := func(id string) behaviour {
			switch i := indexOf(id); {
			case i%10 == 1:
				return panicOnce
			case i%10 == 2:
				return failTwice
			case i%20 == 3:
				return alwaysFail
			case i%20 == 4:
				return permanent
			}
			return succeed
		}
		retry, err := middleware.BrokerRetry{
			ReconsumeTimes:    rocketmq.ReconsumeTimesFromCtx,
			MaxReconsumeTimes: maxReconsume,
			DelayLevel:        func(int32) int { return 1 }, // 1 s, 10 ms at minirmq's time scale
		}.Middleware()
		if err != nil {
			t.Fatal(err)
		}
		var tries attempts
		startConsumer(t, tg, topic, group, path, consumerOptions{
			brokerRetry: true,
			middleware:  []message.HandlerMiddleware{retry, wmw.Recoverer},
			handle:      func(_ context.Context, id string) error { return act(kind(id), tries.next(id)) },
		})
		dead := func() map[string]bool {
			out := map[string]bool{}
			if tg.srv != nil {
				for _, m := range tg.srv.Messages("%DLQ%" + group) {
					out[m.Properties[rocketmq.UUIDProperty]] = true
				}
				return out
			}
			got, err := readLedger(dlqPath)
			if err != nil {
				t.Fatal(err)
			}
			for id := range got {
				out[id] = true
			}
			return out
		}
		if tg.srv == nil {
			// On a real broker the dead letters are read back by a consumer of %DLQ%<group>
			// (created readable up front by the subscriber's AutoCreateTopic).
			startConsumer(t, tg, "%DLQ%"+group, newGroup(), dlqPath, consumerOptions{})
		}
		res := publishAll(tg.publisher(t), topic, newIDs(handlerN/2), nil)
		waitHandled(t, path, res.okIDs, dead, 90*time.Second)
		note := ""
		if tg.srv != nil {
			retried := len(tg.srv.Messages("%RETRY%" + group))
			note = itoa(retried) + " broker redeliveries"
			if retried == 0 {
				t.Error("no message went through %RETRY%: the retries did not use the broker")
			}
		}
		finish(t, caseName, tg.name, res, path, dead(), note)
		checkOutcomes(t, res.okIDs(), path, dead(), func(id string) bool {
			k := kind(id)
			return k == alwaysFail || k == permanent
		})
	})
}
