package rocketmq

import (
	"strings"
	"sync"
	"time"

	"github.com/apache/rocketmq-client-go/v2/consumer"
	"github.com/apache/rocketmq-client-go/v2/primitive"
)

// RocketMQ 4.9.x handles a client's heartbeats and the close of its connection on different
// threads. A heartbeat that a consumer sent just before it shut down (the client sends one after
// every rebalance that changes its queues) can be handled after the close and register the
// consumer again on the dead connection. The broker then lists it as a group member until its
// scan expires idle connections, about 120 s later, and the group's live consumers leave the
// queues they assign to it unread for that long. rocketmq-client-go v2.1.2 gives no way to wait
// for its heartbeat before closing, and the broker drops a member only over its own connection,
// so the stale entry cannot be removed. What this process can do is not assign queues to the
// consumers it shut down itself: closedConsumers remembers them for as long as the broker may
// list them, and every Subscriber's allocation leaves them out. A consumer shut down by another
// process is not known here; its queues wait for the broker's expiry as before.
var closedConsumers = &closedClientSet{closed: map[string]time.Time{}}

// closedClientMemory is how long a shut-down consumer is left out of allocations: the broker's
// 120 s channel expiry plus its 10 s scan, with a margin.
const closedClientMemory = 150 * time.Second

// closedClientSet holds instance names of consumers this process shut down, with when.
type closedClientSet struct {
	mu     sync.Mutex
	closed map[string]time.Time
}

func (s *closedClientSet) add(instanceName string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	for name, at := range s.closed {
		if now.Sub(at) > closedClientMemory {
			delete(s.closed, name)
		}
	}
	s.closed[instanceName] = now
}

// contains reports whether clientID (ClientIP@InstanceName) is a consumer shut down recently.
func (s *closedClientSet) contains(clientID string) bool {
	at := strings.LastIndexByte(clientID, '@')
	if at < 0 {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	closedAt, ok := s.closed[clientID[at+1:]]
	return ok && time.Since(closedAt) <= closedClientMemory
}

// withoutClosedConsumers makes inner allocate among the group's members minus the consumers
// this process shut down (see closedConsumers).
func withoutClosedConsumers(inner consumer.AllocateStrategy) consumer.AllocateStrategy {
	return func(group, currentCID string, mqAll []*primitive.MessageQueue, cidAll []string) []*primitive.MessageQueue {
		live := make([]string, 0, len(cidAll))
		for _, id := range cidAll {
			if id == currentCID || !closedConsumers.contains(id) {
				live = append(live, id)
			}
		}
		return inner(group, currentCID, mqAll, live)
	}
}
