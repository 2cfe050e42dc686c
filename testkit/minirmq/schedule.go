package minirmq

import (
	"container/heap"
	"strconv"
	"time"
)

// delayLevels are messageDelayLevel's defaults: 1s 5s 10s 30s 1m 2m 3m 4m 5m 6m 7m 8m 9m 10m 20m 30m 1h 2h.
var delayLevels = [maxDelayLevels]time.Duration{
	time.Second, 5 * time.Second, 10 * time.Second, 30 * time.Second,
	time.Minute, 2 * time.Minute, 3 * time.Minute, 4 * time.Minute, 5 * time.Minute, 6 * time.Minute,
	7 * time.Minute, 8 * time.Minute, 9 * time.Minute, 10 * time.Minute, 20 * time.Minute, 30 * time.Minute,
	time.Hour, 2 * time.Hour,
}

// timerTopic holds messages with a 5.x delivery time until they are due.
const timerTopic = "rmq_sys_wheel_timer"

type dueItem struct {
	due  time.Time
	phys int64
}

type dueHeap []dueItem

func (h dueHeap) Len() int { return len(h) }
func (h dueHeap) Less(i, j int) bool {
	if h[i].due.Equal(h[j].due) {
		return h[i].phys < h[j].phys
	}
	return h[i].due.Before(h[j].due)
}
func (h dueHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *dueHeap) Push(x any)   { *h = append(*h, x.(dueItem)) }
func (h *dueHeap) Pop() any {
	old := *h
	it := old[len(old)-1]
	*h = old[:len(old)-1]
	return it
}

// scheduler holds delayed messages (by commit-log offset) until they are due. Requires s.mu.
type scheduler struct {
	items dueHeap
	wake  chan struct{}
}

func newScheduler() *scheduler { return &scheduler{wake: make(chan struct{}, 1)} }

func (sc *scheduler) add(due time.Time, phys int64) {
	heap.Push(&sc.items, dueItem{due: due, phys: phys})
	select {
	case sc.wake <- struct{}{}:
	default:
	}
}

// scheduleLoop moves due delayed messages to their real topic, as ScheduleMessageService does.
func (s *Server) scheduleLoop() {
	defer s.loopWG.Done()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		s.mu.Lock()
		now := time.Now()
		for s.sched.items.Len() > 0 && !s.sched.items[0].due.After(now) {
			it := heap.Pop(&s.sched.items).(dueItem)
			if err := s.deliverDelayedLocked(it.phys, now); err != nil {
				// Keep it parked and try again shortly: dropping it would lose the message.
				s.cfg.logger.Error("minirmq: delivering a delayed message", "commitLogOffset", it.phys, "err", err)
				heap.Push(&s.sched.items, dueItem{due: now.Add(time.Second), phys: it.phys})
				break
			}
		}
		wait := time.Hour
		if s.sched.items.Len() > 0 {
			wait = s.sched.items[0].due.Sub(now)
		}
		s.mu.Unlock()
		timer.Reset(wait)
		select {
		case <-s.stop:
			return
		case <-s.sched.wake:
			if !timer.Stop() {
				<-timer.C
			}
		case <-timer.C:
		}
	}
}

// deliverDelayedLocked stores the due message in its real topic and queue. Requires s.mu.
func (s *Server) deliverDelayedLocked(phys int64, now time.Time) error {
	st := s.store.byPhys(phys)
	if st == nil {
		return nil // dropped by retention
	}
	m, err := decodeStored(st.enc)
	if err != nil {
		return nil // cannot happen: the store holds only what it encoded
	}
	return s.moveToRealTopicLocked(m, now, 0, propDelay, propTimerDeliver, propTimerDelaySec, propTimerDelayMs)
}

// moveToRealTopicLocked appends a parked message (delayed, or a committed half message) to the
// topic and queue named by its REAL_TOPIC and REAL_QID properties, without the listed
// properties. The delayed path keeps REAL_* as the real broker does. Requires s.mu.
func (s *Server) moveToRealTopicLocked(m *msgFields, now time.Time, preparedTxOffset int64, drop ...string) error {
	props := parseProperties(m.properties)
	realTopic := props[propRealTopic]
	if err := validateTopic(realTopic); err != nil {
		// Only a damaged store holds such a message: it has nowhere to go.
		s.cfg.logger.Error("minirmq: a parked message names no valid topic; dropped", "commitLogOffset", m.phys, "err", err)
		return nil
	}
	qid, _ := strconv.Atoi(props[propRealQueueID])
	for _, k := range drop {
		delete(props, k)
	}
	t, ok := s.store.topics[realTopic]
	if !ok {
		t = s.store.createTopic(realTopic, s.cfg.queueNums, s.cfg.queueNums, permRW)
	}
	if qid < 0 || qid >= len(t.queues) {
		qid = 0
	}
	propStr := formatProperties(props, nil)
	_, err := s.store.append(t, int32(qid), func(qoff, p int64) *msgFields {
		return &msgFields{topic: realTopic, queueID: int32(qid), flag: m.flag, queueOffset: qoff, phys: p,
			sysFlag: m.sysFlag, bornTs: m.bornTs, bornHost: m.bornHost, storeTs: now.UnixMilli(),
			storeHost: s.advertised, reconsumeTimes: m.reconsumeTimes, preparedTxOffset: preparedTxOffset,
			body: m.body, properties: propStr}
	}, props[propTags], props[propKeys], props[propUniqKey])
	return err
}
