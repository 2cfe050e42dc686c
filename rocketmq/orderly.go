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
// The new owner may have tried (and failed) to lock a queue just before the old owner released
// it; the client would only try again at its next periodic rebalance, 20 s later. So when this
// consumer gains queues, the releaser also asks for a few extra rebalances, one a second.
type queueReleaser struct {
	nameServers []string
	group       string

	// kick has room for one pending request for extra rebalances.
	kick chan struct{}

	mu sync.Mutex
	// assigned holds this consumer's queues per topic (the strategy runs once per subscribed
	// topic, including %RETRY%<group>).
	assigned map[string]map[primitive.MessageQueue]struct{}
}

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
		gained := false
		r.mu.Lock()
		if r.assigned == nil {
			r.assigned = map[string]map[primitive.MessageQueue]struct{}{}
		}
		prev := r.assigned[topic]
		for mq := range prev {
			if _, ok := now[mq]; !ok {
				lost = append(lost, mq)
			}
		}
		for mq := range now {
			if _, ok := prev[mq]; !ok {
				gained = true
			}
		}
		r.assigned[topic] = now
		r.mu.Unlock()
		if len(lost) > 0 {
			r.unlock(currentCID, lost)
		}
		if gained {
			select {
			case r.kick <- struct{}{}:
			default:
			}
		}
		return result
	}
}

// rebalanceLoop serves kicks with extra rebalances until done closes.
func (r *queueReleaser) rebalanceLoop(rebalance func(), done <-chan struct{}) {
	const extraRebalances = 3
	for {
		select {
		case <-r.kick:
		case <-done:
			return
		}
		for i := 0; i < extraRebalances; i++ {
			select {
			case <-time.After(time.Second):
				rebalance()
			case <-done:
				return
			}
		}
	}
}

// unlock releases the broker locks of mqs held by clientID. Failures only delay the new owner,
// so they are not reported.
func (r *queueReleaser) unlock(clientID string, mqs []primitive.MessageQueue) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	route, err := firstRoute(ctx, r.nameServers, mqs[0].Topic)
	if err != nil {
		return
	}
	byBroker := map[string][]primitive.MessageQueue{}
	for _, mq := range mqs {
		byBroker[mq.BrokerName] = append(byBroker[mq.BrokerName], mq)
	}
	for name, set := range byBroker {
		addr := route.brokers[name]
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
		_, _, _, _ = invoke(ctx, addr, codeUnlockBatchMQ, nil, body)
	}
}
