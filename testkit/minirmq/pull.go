package minirmq

import (
	"strings"
	"time"
)

// Pull sysFlag bits (PullSysFlag).
const (
	pullCommitOffset = 0x1
	pullSuspend      = 0x2
	pullSubscription = 0x4
)

// Transfer limits of one pull (maxTransferCountOnMessageInMemory / BytesOnMessageInMemory).
const (
	maxPullCount = 32
	maxPullBytes = 256 << 10
	maxPullScan  = 16000
)

type pullRequest struct {
	group, topic  string
	queueID       int
	offset        int64
	maxNums       int
	sysFlag       int64
	commitOffset  int64
	suspend       time.Duration
	subscription  string
	expressionTyp string
}

func (s *Server) handlePull(c *conn, req *command) *command {
	p := pullRequest{
		group:         req.ext("consumerGroup"),
		topic:         req.ext("topic"),
		queueID:       int(req.extIntDefault("queueId", -1)),
		offset:        req.extIntDefault("queueOffset", 0),
		maxNums:       int(req.extIntDefault("maxMsgNums", maxPullCount)),
		sysFlag:       req.extIntDefault("sysFlag", 0),
		commitOffset:  req.extIntDefault("commitOffset", -1),
		suspend:       time.Duration(req.extIntDefault("suspendTimeoutMillis", 0)) * time.Millisecond,
		subscription:  req.ext("subscription"),
		expressionTyp: req.ext("expressionType"),
	}
	if p.maxNums <= 0 || p.maxNums > maxPullCount {
		p.maxNums = maxPullCount
	}
	if p.sysFlag&pullCommitOffset != 0 && p.commitOffset >= 0 {
		s.mu.Lock()
		s.store.commitOffset(p.group, p.topic, p.queueID, p.commitOffset)
		s.mu.Unlock()
	}
	resp, wait := s.tryPull(&p)
	if wait == nil || p.sysFlag&pullSuspend == 0 || p.suspend <= 0 {
		return resp
	}
	// Long polling: hold the request until a message arrives or the suspend time runs out.
	c.waiters.Add(1)
	go func() {
		defer c.waiters.Done()
		timer := time.NewTimer(min(p.suspend, s.cfg.suspendMaxDur))
		defer timer.Stop()
		for {
			select {
			case <-wait:
				if resp, wait = s.tryPull(&p); wait == nil {
					c.reply(req, resp)
					return
				}
			case <-timer.C:
				resp, _ = s.tryPull(&p)
				c.reply(req, resp)
				return
			case <-c.done:
				return
			case <-s.stop:
				return
			}
		}
	}()
	return nil
}

// tryPull answers a pull now. When the queue has nothing at the requested offset it also returns
// the channel that is closed by the next append, for long polling.
func (s *Server) tryPull(p *pullRequest) (*command, <-chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.store.topics[p.topic]
	if !ok {
		return errorf(codeTopicNotExist, "topic[%s] not exist, apply first please!", p.topic), nil
	}
	if t.perm&permRead == 0 {
		return errorf(codeNoPermission, "the topic[%s] pulling message is forbidden", p.topic), nil
	}
	q := t.queue(p.queueID)
	if q == nil || p.queueID >= t.readQueueNums {
		return errorf(codeSystemError, "queueId[%d] is illegal, topic:[%s] topicConfig.readQueueNums:[%d] consumer:[%s]",
			p.queueID, p.topic, t.readQueueNums, p.group), nil
	}
	// maxOff is what pulls may read (messages whose send is not answered yet are held back);
	// stored is the true end, which offsets may legally reach.
	minOff, maxOff, stored := q.minOffset, q.visibleMax(), q.maxOffset()
	pullResp := func(code int16, next int64) *command {
		r := response(code, "")
		r.ExtFields["nextBeginOffset"] = itoa(next)
		r.ExtFields["minOffset"] = itoa(minOff)
		r.ExtFields["maxOffset"] = itoa(maxOff)
		r.ExtFields["suggestWhichBrokerId"] = "0"
		return r
	}
	switch {
	case stored == 0 && p.offset != 0:
		return pullResp(codePullOffsetMoved, 0), nil
	case p.offset >= maxOff && p.offset <= stored:
		return pullResp(codePullNotFound, p.offset), q.arrived
	case p.offset < minOff:
		return pullResp(codePullOffsetMoved, minOff), nil
	case p.offset > stored:
		return pullResp(codePullOffsetMoved, stored), nil
	}
	filter, errResp := s.filterFor(p)
	if errResp != nil {
		return errResp, nil
	}
	var (
		body    []byte
		count   int
		scanned int64
	)
	for off := p.offset; off < maxOff && count < p.maxNums && scanned < maxPullScan; off++ {
		st := q.msgs[off-minOff]
		scanned++
		if !filter.match(st.tags) {
			continue
		}
		if count > 0 && len(body)+len(st.enc) > maxPullBytes {
			scanned--
			break
		}
		body = append(body, st.enc...)
		count++
	}
	next := p.offset + scanned
	if count == 0 {
		return pullResp(codePullRetryImmediately, next), nil
	}
	s.gotCount.Add(int64(count))
	return withBody(pullResp(codeSuccess, next), body), nil
}

// faqSuffix is what the real broker appends to some remarks (FAQUrl.suggestTodo).
const faqSuffix = "\nSee http://rocketmq.apache.org/docs/faq/ for further details."

// tagFilter is a parsed TAG subscription expression ("*", "TagA || TagB").
type tagFilter struct {
	all  bool
	tags map[string]bool
}

func parseTagFilter(expr string) tagFilter {
	expr = strings.TrimSpace(expr)
	if expr == "" || expr == "*" {
		return tagFilter{all: true}
	}
	f := tagFilter{tags: map[string]bool{}}
	for _, t := range strings.Split(expr, "||") {
		if t = strings.TrimSpace(t); t != "" {
			f.tags[t] = true
		}
	}
	if len(f.tags) == 0 {
		f.all = true
	}
	return f
}

func (f tagFilter) match(tag string) bool { return f.all || f.tags[tag] }

// filterFor returns the filter of a pull: the pull's own expression when it carries one, else the
// subscription the group registered by heartbeat; without either the real broker refuses the pull.
// Requires s.mu.
func (s *Server) filterFor(p *pullRequest) (tagFilter, *command) {
	if p.sysFlag&pullSubscription != 0 {
		return parseTagFilter(p.subscription), nil
	}
	subs, ok := s.clients.subs[p.group]
	if !ok {
		return tagFilter{}, errorf(codeSubscriptionNotExist, "the consumer's group info not exist"+faqSuffix)
	}
	sub, ok := subs[p.topic]
	if !ok {
		return tagFilter{}, errorf(codeSubscriptionNotExist, "the consumer's subscription not exist"+faqSuffix)
	}
	return parseTagFilter(sub), nil
}

func (s *Server) handleQueryOffset(req *command) *command {
	group, topic, qid := req.ext("consumerGroup"), req.ext("topic"), int(req.extIntDefault("queueId", 0))
	s.mu.Lock()
	defer s.mu.Unlock()
	off, ok := s.store.queryOffset(group, topic, qid)
	if !ok {
		// The real broker answers 0 for a group that never committed while the queue still
		// starts at offset 0, and "not found" once retention has moved the start.
		if s.queueMinOffsetLocked(topic, qid) > 0 {
			return errorf(codeQueryNotFound, "Not found, V3_0_6_SNAPSHOT maybe this group consumer boot first")
		}
		off = 0
	}
	r := success()
	r.ExtFields["offset"] = itoa(off)
	return r
}

func (s *Server) handleUpdateOffset(req *command) *command {
	off, err := req.extInt("commitOffset")
	if err != nil {
		return errorf(codeSystemError, "%v", err)
	}
	s.mu.Lock()
	s.store.commitOffset(req.ext("consumerGroup"), req.ext("topic"), int(req.extIntDefault("queueId", 0)), off)
	s.mu.Unlock()
	return success()
}

func (s *Server) handleSearchOffset(req *command) *command {
	ts := req.extIntDefault("timestamp", 0)
	s.mu.Lock()
	defer s.mu.Unlock()
	var off int64
	if t, ok := s.store.topics[req.ext("topic")]; ok {
		if q := t.queue(int(req.extIntDefault("queueId", 0))); q != nil {
			off = q.nearestOffset(ts)
		}
	}
	r := success()
	r.ExtFields["offset"] = itoa(off)
	return r
}

func (s *Server) handleMinMaxOffset(req *command, wantMax bool) *command {
	topic, qid := req.ext("topic"), int(req.extIntDefault("queueId", 0))
	s.mu.Lock()
	defer s.mu.Unlock()
	var off int64
	if wantMax {
		if t, ok := s.store.topics[topic]; ok {
			if q := t.queue(qid); q != nil {
				off = q.visibleMax()
			}
		}
	} else {
		off = s.queueMinOffsetLocked(topic, qid)
	}
	r := success()
	r.ExtFields["offset"] = itoa(off)
	return r
}

func (s *Server) queueMinOffsetLocked(topic string, qid int) int64 {
	if t, ok := s.store.topics[topic]; ok {
		if q := t.queue(qid); q != nil {
			return q.minOffset
		}
	}
	return 0
}
