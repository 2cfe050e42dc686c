package rocketmq

import (
	"context"
	"encoding/json"
	"sync"
	"time"

	"github.com/apache/rocketmq-client-go/v2/consumer"
	"github.com/apache/rocketmq-client-go/v2/primitive"
)

const codeUnlockBatchMQ = 42

// queueReleaser fixes a gap of rocketmq-client-go v2.1.2 in orderly clustering mode: when a
// rebalance moves a queue to another consumer, the client drops the queue but keeps the broker
// lock on it (the Java client unlocks). The new owner cannot lock the queue until the broker lock
// expires (60 s) and its next rebalance runs (every 20 s), so every consumer that joins a group
// can stall a queue for more than a minute. The releaser wraps the allocation strategy, notices
// the queues this consumer loses and unlocks them at their broker.
//
// Both sides race: the new owner may try to lock before the old owner released, and the old
// owner's periodic lockAll may take the lock again right after the release. So for a settling
// window after every change of this consumer's queues, the releaser repeats the unlock of the
// queues it lost and asks the client for a rebalance (which locks queues it owns but has not
// locked yet) every settleInterval, instead of waiting for the client's 20 s cycle.
type queueReleaser struct {
	nameServers []string
	group       string
	// credentials sign the unlock requests for brokers with ACL.
	credentials primitive.Credentials

	// kick has room for one pending notice of a change.
	kick chan struct{}

	mu sync.Mutex
	// assigned holds this consumer's queues per topic (the strategy runs once per subscribed
	// topic, including %RETRY%<group>).
	assigned map[string]map[primitive.MessageQueue]struct{}
	// lost are queues given up during the settling window, with the client id that held them.
	lost     map[primitive.MessageQueue]struct{}
	clientID string
}

const (
	settleInterval = time.Second
	settleRounds   = 20
)

func (r *queueReleaser) strategy(inner consumer.AllocateStrategy) consumer.AllocateStrategy {
	return func(group, currentCID string, mqAll []*primitive.MessageQueue, cidAll []string) []*primitive.MessageQueue {
		result := inner(group, currentCID, mqAll, cidAll)
		if len(mqAll) == 0 {
			return result
		}
		topic := mqAll[0].Topic
		now := make(map[primitive.MessageQueue]struct{}, len(result))
		for _, mq := range result {
			now[*mq] = struct{}{}
		}
		var lost []primitive.MessageQueue
		changed := false
		r.mu.Lock()
		if r.assigned == nil {
			r.assigned = map[string]map[primitive.MessageQueue]struct{}{}
			r.lost = map[primitive.MessageQueue]struct{}{}
		}
		r.clientID = currentCID
		prev := r.assigned[topic]
		for mq := range prev {
			if _, ok := now[mq]; !ok {
				lost = append(lost, mq)
				r.lost[mq] = struct{}{}
			}
		}
		for mq := range now {
			delete(r.lost, mq)
			if _, ok := prev[mq]; !ok {
				changed = true
			}
		}
		changed = changed || len(lost) > 0
		r.assigned[topic] = now
		r.mu.Unlock()
		if len(lost) > 0 {
			r.unlock(currentCID, lost)
		}
		if changed {
			select {
			case r.kick <- struct{}{}:
			default:
			}
		}
		return result
	}
}

// settleLoop runs the settling window after each change until done closes.
func (r *queueReleaser) settleLoop(rebalance func(), done <-chan struct{}) {
	for {
		select {
		case <-r.kick:
		case <-done:
			return
		}
		for round := 0; round < settleRounds; round++ {
			select {
			case <-r.kick:
				round = 0 // another change: the window starts again
			case <-time.After(settleInterval):
			case <-done:
				return
			}
			r.mu.Lock()
			lost := make([]primitive.MessageQueue, 0, len(r.lost))
			for mq := range r.lost {
				lost = append(lost, mq)
			}
			clientID := r.clientID
			r.mu.Unlock()
			if len(lost) > 0 {
				r.unlock(clientID, lost)
			}
			rebalance()
		}
		r.mu.Lock()
		clear(r.lost)
		r.mu.Unlock()
	}
}

// releaseAll unlocks every queue this consumer held or was given. The client's Shutdown unlocks
// only the queues in its table, and a rebalance running during Shutdown can lock one more; that
// lock would block the group for the broker's lock lifetime (60 s).
func (r *queueReleaser) releaseAll() {
	r.mu.Lock()
	var mqs []primitive.MessageQueue
	for _, set := range r.assigned {
		for mq := range set {
			mqs = append(mqs, mq)
		}
	}
	for mq := range r.lost {
		mqs = append(mqs, mq)
	}
	clientID := r.clientID
	r.mu.Unlock()
	if len(mqs) > 0 && clientID != "" {
		r.unlock(clientID, mqs)
	}
}

// unlock releases the broker locks of mqs held by clientID. Failures only delay the new owner,
// so they are not reported.
func (r *queueReleaser) unlock(clientID string, mqs []primitive.MessageQueue) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	brokers := map[string]string{}
	byBroker := map[string][]primitive.MessageQueue{}
	for _, mq := range mqs {
		if _, ok := brokers[mq.BrokerName]; !ok {
			route, err := firstRoute(ctx, r.nameServers, mq.Topic)
			if err != nil {
				continue
			}
			for name, addr := range route.brokers {
				brokers[name] = addr
			}
		}
		byBroker[mq.BrokerName] = append(byBroker[mq.BrokerName], mq)
	}
	for name, set := range byBroker {
		addr := brokers[name]
		if addr == "" {
			continue
		}
		body, err := json.Marshal(struct {
			ConsumerGroup string                   `json:"consumerGroup"`
			ClientID      string                   `json:"clientId"`
			MQs           []primitive.MessageQueue `json:"mqSet"`
		}{r.group, clientID, set})
		if err != nil {
			continue
		}
		ext := map[string]string{}
		if !r.credentials.IsEmpty() {
			signRequest(ext, body, r.credentials)
		}
		_, _, _, _ = invoke(ctx, addr, codeUnlockBatchMQ, ext, body)
	}
}
