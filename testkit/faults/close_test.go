package faults

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
)

// closeN is the number of messages of the Close cases.
const closeN = 600

// routerCloseTimeout is the router's CloseTimeout in the Close cases.
const routerCloseTimeout = 10 * time.Second

// subscriberCloseBound is the longest a subscriber's Close may take: its own CloseTimeout
// (15 s for rocketmq and nats here, Watermill's 30 s default in the other adapters) plus
// room for a loaded machine. It only catches a Close that hangs.
const subscriberCloseBound = 45 * time.Second

// TestRouterCloseUnderLoad closes the router while handlers are busy: Close must return
// within its timeout, every handler that had started must have finished, no goroutine of the
// consumer may outlive it, and a new consumer in the same group must get every message that
// was not handled.
func TestRouterCloseUnderLoad(t *testing.T) {
	closeUnderLoad(t, "router Close under load", false)
}

// TestSubscriberCloseUnderLoad closes the subscriber under a running router, the way a
// process shutting down its transport does.
func TestSubscriberCloseUnderLoad(t *testing.T) {
	closeUnderLoad(t, "subscriber Close under load", true)
}

// natsCloseBug is why the Close cases skip on NATS: a bug in watermill-nats, not in rocketbus.
const natsCloseBug = "watermill-nats v2.1.3 bug: when the router cancels a JetStream subscription while messages " +
	"arrive, Subscriber.processMessage sends on the closed output channel (panic: send on closed channel, " +
	"subscriber.go:331), or its message callbacks stay blocked and the connection outlives Close, holding the " +
	"messages JetStream redelivers to the group (observed: 53 of 600 never handled). FAULTS_NATS_CLOSE=1 runs it"

// gochannelCloseSkip is why the Close cases skip on gochannel: it cannot pass them by design.
const gochannelCloseSkip = "gochannel has no consumer groups and keeps nothing: what a closed subscriber had not " +
	"handled is gone, no new subscriber gets it (one loaded run: 141 of 600), so there is nothing to come back"

func closeUnderLoad(t *testing.T, caseName string, closeSubscriber bool) {
	eachTarget(t, caseName, func(t *testing.T, tg *target) {
		if tg.name == "nats" && os.Getenv("FAULTS_NATS_CLOSE") != "1" {
			skipCase(t, caseName, tg.name, natsCloseBug)
		}
		if tg.name == "gochannel" {
			skipCase(t, caseName, tg.name, gochannelCloseSkip)
		}
		topic, group := tg.topic(t), newGroup()
		dir := t.TempDir()
		path := filepath.Join(dir, "handled")
		pub := tg.publisher(t)
		// Goroutines of the backend and the publisher exist already; everything the consumer
		// starts from here on must be gone after Close.
		before := goroutineStacks()

		var (
			mu    sync.Mutex
			begun = map[string]bool{}
			sub   message.Subscriber
		)
		r := startConsumer(t, tg, topic, group, path, consumerOptions{
			closeTimeout: routerCloseTimeout,
			onSubscriber: func(s message.Subscriber) {
				mu.Lock()
				sub = s
				mu.Unlock()
			},
			handle: func(ctx context.Context, id string) error {
				mu.Lock()
				begun[id] = true
				mu.Unlock()
				time.Sleep(30 * time.Millisecond)
				return nil
			},
		})
		// Published after the consumer started: some backends (gochannel, RabbitMQ) drop
		// what is published to a group before its first subscription.
		published := make(chan *publishResult, 1)
		go func() { published <- publishAll(pub, topic, newIDs(closeN), nil) }()
		res := <-published
		waitCount(t, path, closeN/6)

		start := time.Now()
		var err error
		bound := routerCloseTimeout + subscriberCloseBound
		if closeSubscriber {
			bound = subscriberCloseBound
			mu.Lock()
			s := sub
			mu.Unlock()
			err = s.Close()
		} else {
			err = r.Close()
		}
		took := time.Since(start)
		if err != nil {
			t.Errorf("Close: %v", err)
		}
		if took > bound {
			t.Errorf("Close took %s, more than its timeout allows (%s)", took.Round(time.Millisecond), bound)
		}
		if closeSubscriber {
			// The router notices that its subscription ended; close it too before the leak
			// check, as a process would.
			if err := r.Close(); err != nil {
				t.Logf("router Close after the subscriber's: %v", err)
			}
		}

		mu.Lock()
		started := len(begun)
		var unfinished []string
		done, rerr := readLedger(path)
		if rerr != nil {
			t.Fatal(rerr)
		}
		for id := range begun {
			if done[id] == 0 {
				unfinished = append(unfinished, id)
			}
		}
		mu.Unlock()
		t.Logf("Close took %s; %d handlers had started, %d handled, %d started but unfinished", took.Round(time.Millisecond), started, len(done), len(unfinished))
		if len(unfinished) > 0 {
			t.Errorf("%d handlers were cut off by Close, e.g. %v", len(unfinished), unfinished[:min(10, len(unfinished))])
		}
		if leaked := leakedSince(before); len(leaked) > 0 {
			t.Errorf("%d goroutines outlived Close:\n%s", len(leaked), strings.Join(leaked, "\n\n"))
		}
		handledAtClose := len(done)

		startConsumer(t, tg, topic, group, path, consumerOptions{})
		waitHandled(t, path, res.okIDs, nil, 90*time.Second)
		finish(t, caseName, tg.name, res, path, nil, itoa(handledAtClose)+" handled before Close, Close took "+took.Round(time.Millisecond).String())
	})
}
