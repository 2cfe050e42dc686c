package minirmq

import "fmt"

// Inspection and set-up helpers for tests.

// CreateTopic creates a topic (or changes its queue count) with read and write permission.
func (s *Server) CreateTopic(topic string, queues int) error {
	if err := validateTopic(topic); err != nil {
		return fmt.Errorf("minirmq: %w", err)
	}
	if queues <= 0 {
		return fmt.Errorf("minirmq: topic %s: queue count must be positive, got %d", topic, queues)
	}
	s.mu.Lock()
	s.store.createTopic(topic, queues, queues, permRW)
	s.mu.Unlock()
	if err := s.saveAdminChange(); err != nil {
		return fmt.Errorf("minirmq: topic %s created but not saved: %w", topic, err)
	}
	return nil
}

// Topics lists every topic, system topics included, sorted.
func (s *Server) Topics() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return sortedKeys(s.store.topics)
}

// Messages returns the messages stored in a topic, in store order. Delayed messages are in
// SCHEDULE_TOPIC_XXXX until due; retries in %RETRY%<group>; dead letters in %DLQ%<group>.
func (s *Server) Messages(topic string) []Message {
	s.mu.Lock()
	var encs [][]byte
	for _, st := range s.store.log[s.store.logHead:] {
		if st.topic == topic {
			encs = append(encs, st.enc)
		}
	}
	s.mu.Unlock()
	out := make([]Message, 0, len(encs))
	for _, e := range encs {
		out = append(out, toMessage(e))
	}
	return out
}

// Offset is the offset a consumer group committed for one queue of a topic.
func (s *Server) Offset(group, topic string, queueID int) (int64, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.store.queryOffset(group, topic, queueID)
}

// Lag is how many messages of a topic the group has not committed yet, over all queues.
func (s *Server) Lag(group, topic string) int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.store.topics[topic]
	if !ok {
		return 0
	}
	var lag int64
	for i, q := range t.queues {
		off, ok := s.store.queryOffset(group, topic, i)
		if !ok || off < q.minOffset {
			off = q.minOffset
		}
		lag += max(q.maxOffset()-off, 0)
	}
	return lag
}

// Consumers lists the client ids of a group's connected consumers.
func (s *Server) Consumers(group string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.clients.consumerIDs(group)
}

// PendingTransactions counts half messages waiting for commit or rollback.
func (s *Server) PendingTransactions() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.halfs)
}
