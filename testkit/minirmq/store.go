package minirmq

import (
	"fmt"
	"sort"
	"strings"
	"time"
)

// Permission bits of a topic (PermName).
const (
	permInherit = 1
	permWrite   = 2
	permRead    = 4
	permRW      = permRead | permWrite
)

// System topics of the real broker.
const (
	defaultTopic   = "TBW102"
	scheduleTopic  = "SCHEDULE_TOPIC_XXXX"
	halfTopic      = "RMQ_SYS_TRANS_HALF_TOPIC"
	retryPrefix    = "%RETRY%"
	dlqPrefix      = "%DLQ%"
	maxDelayLevels = 18
)

// validTopicChars is TopicValidator's ^[%|a-zA-Z0-9_-]+$ without a regexp on the send path.
func validTopicChars(topic string) bool {
	for i := 0; i < len(topic); i++ {
		c := topic[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '%' || c == '|' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// validateTopic applies TopicValidator's rules and names the problem.
func validateTopic(topic string) error {
	switch {
	case strings.TrimSpace(topic) == "":
		return fmt.Errorf("The specified topic is blank")
	case len(topic) > maxTopicLength:
		return fmt.Errorf("The specified topic is longer than topic max length %d", maxTopicLength)
	case !validTopicChars(topic):
		return fmt.Errorf("The specified topic[%s] contains illegal characters, allowing only ^[%%|a-zA-Z0-9_-]+$", topic)
	}
	return nil
}

// stored is one message in the commit log. The encoded bytes are what pulls return; the other
// fields are the few the broker filters and looks up by.
type stored struct {
	enc         []byte
	topic       string
	tags        string
	keys        string
	uniqKey     string
	queueID     int32
	queueOffset int64
	phys        int64
	storeTs     int64
}

type queue struct {
	msgs []*stored
	// minOffset is the logical offset of msgs[0]: retention drops a prefix.
	minOffset int64
	// arrived is closed and replaced whenever messages become visible to pulls: long-polling
	// pulls wait on it.
	arrived chan struct{}
	// held are the offsets, ascending, of messages stored by sends whose replies are not
	// written yet: pulls see the queue up to the first of them (visibleMax), as the real broker
	// dispatches a stored message to its consume queue as it answers the put. A consumer then
	// does not get a message long before its producer could know it was sent (a long burst of
	// requests on one connection holds its replies back, see replyFlushBytes).
	held []int64
}

func newQueue() *queue { return &queue{arrived: make(chan struct{})} }

func (q *queue) maxOffset() int64 { return q.minOffset + int64(len(q.msgs)) }

// visibleMax is the end of what pulls may read: maxOffset, less the messages held back.
func (q *queue) visibleMax() int64 {
	if len(q.held) > 0 {
		return max(q.held[0], q.minOffset)
	}
	return q.maxOffset()
}

// wake tells the pulls waiting on the queue to look again.
func (q *queue) wake() {
	close(q.arrived)
	q.arrived = make(chan struct{})
}

// release makes the held message at offset visible.
func (q *queue) release(offset int64) {
	for i, o := range q.held {
		if o == offset {
			q.held = append(q.held[:i], q.held[i+1:]...)
			return
		}
	}
}

// heldMessage is a message a send stored and holds back from pulls until its reply is written
// (conn.releaseHeld).
type heldMessage struct {
	q      *queue
	offset int64
}

type topicConfig struct {
	name string
	// createdPhys is the commit-log end when the topic was created; recovery from a data
	// directory skips older messages of a deleted topic of the same name.
	createdPhys    int64
	readQueueNums  int
	writeQueueNums int
	perm           int
	queues         []*queue
}

func (t *topicConfig) ensureQueues(n int) {
	for len(t.queues) < n {
		t.queues = append(t.queues, newQueue())
	}
}

// queue returns queue id, or nil when it does not exist.
func (t *topicConfig) queue(id int) *queue {
	if id < 0 || id >= len(t.queues) {
		return nil
	}
	return t.queues[id]
}

// store is the in-memory commit log with per-topic consume queues and consumer offsets. All
// methods require Server.mu.
type store struct {
	topics  map[string]*topicConfig
	log     []*stored // ordered by phys
	logHead int       // log[:logHead] were dropped by retention (kept nil until compacted)
	nextPhy int64
	bytes   int64
	puts    int64
	// offsets: group -> topic@queue -> committed offset.
	offsets map[string]map[queueKey]int64
	// wal, when the server has a data directory, receives every message before it is stored.
	wal *commitLog
	// hold, while set, collects the messages appended instead of showing them to pulls at once
	// (queue.held): a producer's send sets it, and its connection releases them once the reply
	// is written.
	hold *[]heldMessage
}

type queueKey struct {
	topic string
	queue int
}

func newStore() *store {
	return &store{topics: map[string]*topicConfig{}, offsets: map[string]map[queueKey]int64{}}
}

func (s *store) createTopic(name string, read, write, perm int) *topicConfig {
	t, ok := s.topics[name]
	if !ok {
		t = &topicConfig{name: name, createdPhys: s.nextPhy}
		s.topics[name] = t
	}
	t.readQueueNums, t.writeQueueNums, t.perm = read, write, perm
	t.ensureQueues(max(read, write))
	return t
}

// append stores one message, assigning queue offset and commit-log offset, and wakes pullers.
// It fails only when the data directory cannot take the message, which is then not stored.
func (s *store) append(t *topicConfig, queueID int32, build func(queueOffset, phys int64) *msgFields, tags, keys, uniq string) (*stored, error) {
	t.ensureQueues(int(queueID) + 1)
	q := t.queues[queueID]
	f := build(q.maxOffset(), s.nextPhy)
	enc := encodeStored(f)
	if s.wal != nil {
		if err := s.wal.write(f.phys, enc); err != nil {
			return nil, err
		}
	}
	st := &stored{enc: enc, topic: t.name, tags: tags, keys: keys, uniqKey: uniq, queueID: queueID,
		queueOffset: f.queueOffset, phys: f.phys, storeTs: f.storeTs}
	s.nextPhy += int64(len(enc))
	s.bytes += int64(len(enc))
	s.puts++
	s.log = append(s.log, st)
	q.msgs = append(q.msgs, st)
	if s.hold != nil {
		q.held = append(q.held, f.queueOffset)
		*s.hold = append(*s.hold, heldMessage{q: q, offset: f.queueOffset})
	} else {
		q.wake()
	}
	return st, nil
}

// dropOldest removes the oldest message from the commit log and from its queue, whose first
// message it necessarily is (queues append in commit-log order). It reports false when empty.
func (s *store) dropOldest() bool {
	if s.logHead >= len(s.log) {
		return false
	}
	st := s.log[s.logHead]
	s.log[s.logHead] = nil
	s.logHead++
	s.bytes -= int64(len(st.enc))
	if t, ok := s.topics[st.topic]; ok {
		if q := t.queue(int(st.queueID)); q != nil && len(q.msgs) > 0 && q.msgs[0] == st {
			q.msgs[0] = nil
			q.msgs = q.msgs[1:]
			q.minOffset++
			if cap(q.msgs) > 64 && len(q.msgs) < cap(q.msgs)/4 {
				q.msgs = append(make([]*stored, 0, len(q.msgs)*2), q.msgs...)
			}
		}
	}
	// Compact the log once most of it is dropped, so its backing array does not grow forever.
	if s.logHead > 1024 && s.logHead > len(s.log)/2 {
		s.log = append(make([]*stored, 0, (len(s.log)-s.logHead)*2), s.log[s.logHead:]...)
		s.logHead = 0
	}
	return true
}

// enforceRetention drops the oldest messages while the log is over its byte budget or older
// than maxAge (zero disables either bound).
func (s *store) enforceRetention(maxBytes int64, maxAge time.Duration, now time.Time) int {
	dropped := 0
	for s.logHead < len(s.log) {
		head := s.log[s.logHead]
		over := maxBytes > 0 && s.bytes > maxBytes
		old := maxAge > 0 && now.Sub(time.UnixMilli(head.storeTs)) > maxAge
		if !over && !old {
			break
		}
		s.dropOldest()
		dropped++
	}
	return dropped
}

// byPhys finds a message by commit-log offset.
func (s *store) byPhys(phys int64) *stored {
	live := s.log[s.logHead:]
	i := sort.Search(len(live), func(i int) bool { return live[i].phys >= phys })
	if i < len(live) && live[i].phys == phys {
		return live[i]
	}
	return nil
}

func (s *store) commitOffset(group, topic string, queueID int, offset int64) {
	g := s.offsets[group]
	if g == nil {
		g = map[queueKey]int64{}
		s.offsets[group] = g
	}
	g[queueKey{topic, queueID}] = offset
}

func (s *store) queryOffset(group, topic string, queueID int) (int64, bool) {
	off, ok := s.offsets[group][queueKey{topic, queueID}]
	return off, ok
}

// nearestOffset answers SEARCH_OFFSET_BY_TIMESTAMP as ConsumeQueue.getOffsetInQueueByTime does:
// the message stored exactly at ts, else the one stored nearest to ts (the earlier on a tie), so
// a time past the last message gives the last message's offset, not the max offset.
func (q *queue) nearestOffset(ts int64) int64 {
	n := len(q.msgs)
	if n == 0 {
		return q.minOffset
	}
	i := sort.Search(n, func(i int) bool { return q.msgs[i].storeTs >= ts })
	switch {
	case i == n:
		return q.minOffset + int64(n-1)
	case q.msgs[i].storeTs == ts || i == 0:
		return q.minOffset + int64(i)
	case ts-q.msgs[i-1].storeTs > q.msgs[i].storeTs-ts:
		return q.minOffset + int64(i)
	default:
		return q.minOffset + int64(i-1)
	}
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
