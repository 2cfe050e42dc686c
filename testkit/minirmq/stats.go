package minirmq

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Requests operators' tools (mqadmin, dashboards) and the Java client send for statistics,
// connections, message look-ups and offset resets. Replies follow the real broker's JSON,
// including fastjson's object-keyed maps ({{"brokerName":..}:{..}}) for message-queue tables.

// mqJSON renders a MessageQueue the way fastjson writes it as a map key.
func (s *Server) mqJSON(topic string, queueID int) string {
	return fmt.Sprintf(`{"brokerName":%q,"queueId":%d,"topic":%q}`, s.cfg.brokerName, queueID, topic)
}

// objectKeyed renders fastjson's Map<MessageQueue, V> form from ordered key/value JSON pairs.
func objectKeyed(pairs [][2]string) string {
	var b strings.Builder
	b.WriteByte('{')
	for i, p := range pairs {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(p[0])
		b.WriteByte(':')
		b.WriteString(p[1])
	}
	b.WriteByte('}')
	return b.String()
}

func (s *Server) handleRuntimeInfo() *command {
	s.mu.Lock()
	puts, size, minPhy := s.store.puts, s.store.bytes, int64(0)
	if live := s.store.log[s.store.logHead:]; len(live) > 0 {
		minPhy = live[0].phys
	}
	maxPhy := s.store.nextPhy
	s.mu.Unlock()
	up := time.Since(s.started)
	avg := 0.0
	if puts > 0 {
		avg = float64(size) / float64(puts)
	}
	table := map[string]string{
		"brokerVersionDesc":                    "V4_9_4",
		"brokerVersion":                        "401",
		"bootTimestamp":                        strconv.FormatInt(s.started.UnixMilli(), 10),
		"runtime":                              fmt.Sprintf("[ %d days, %d hours, %d minutes, %d seconds ]", int(up.Hours())/24, int(up.Hours())%24, int(up.Minutes())%60, int(up.Seconds())%60),
		"msgPutTotalTodayNow":                  strconv.FormatInt(puts, 10),
		"msgGetTotalTodayNow":                  strconv.FormatInt(s.gotCount.Load(), 10),
		"msgPutTotalTodayMorning":              "0",
		"msgGetTotalTodayMorning":              "0",
		"msgPutTotalYesterdayMorning":          "0",
		"msgGetTotalYesterdayMorning":          "0",
		"putMessageTimesTotal":                 strconv.FormatInt(puts, 10),
		"putMessageSizeTotal":                  strconv.FormatInt(size, 10),
		"putMessageAverageSize":                strconv.FormatFloat(avg, 'f', -1, 64),
		"putMessageFailedTimes":                "0",
		"putTps":                               "0.0 0.0 0.0",
		"getTotalTps":                          "0.0 0.0 0.0",
		"getFoundTps":                          "0.0 0.0 0.0",
		"getMissTps":                           "0.0 0.0 0.0",
		"getTransferedTps":                     "0.0 0.0 0.0",
		"commitLogMinOffset":                   strconv.FormatInt(minPhy, 10),
		"commitLogMaxOffset":                   strconv.FormatInt(maxPhy, 10),
		"commitLogDiskRatio":                   "0.0",
		"consumeQueueDiskRatio":                "0.0",
		"dispatchBehindBytes":                  "0",
		"remainHowManyDataToFlush":             "0 B",
		"pageCacheLockTimeMills":               "0",
		"earliestMessageTimeStamp":             strconv.FormatInt(s.started.UnixMilli(), 10),
		"sendThreadPoolQueueSize":              "0",
		"pullThreadPoolQueueSize":              "0",
		"queryThreadPoolQueueSize":             "0",
		"startAcceptSendRequestTimeStamp":      "0",
		"sendThreadPoolQueueHeadWaitTimeMills": "0",
		"pullThreadPoolQueueHeadWaitTimeMills": "0",
	}
	return withBody(success(), jsonBody(map[string]any{"table": table}))
}

func (s *Server) handleTopicStats(req *command) *command {
	topic := req.ext("topic")
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.store.topics[topic]
	if !ok {
		return errorf(codeTopicNotExist, "topic[%s] not exist", topic)
	}
	var pairs [][2]string
	for i := 0; i < t.writeQueueNums && i < len(t.queues); i++ {
		q := t.queues[i]
		var last int64
		if n := len(q.msgs); n > 0 {
			last = q.msgs[n-1].storeTs
		}
		pairs = append(pairs, [2]string{s.mqJSON(topic, i),
			fmt.Sprintf(`{"lastUpdateTimestamp":%d,"maxOffset":%d,"minOffset":%d}`, last, q.maxOffset(), q.minOffset)})
	}
	return withBody(success(), []byte(`{"offsetTable":`+objectKeyed(pairs)+`}`))
}

// groupTopicsLocked lists the topics a group committed offsets for (whichTopicByConsumer).
func (s *Server) groupTopicsLocked(group string) []string {
	seen := map[string]bool{}
	for k := range s.store.offsets[group] {
		seen[k.topic] = true
	}
	return sortedKeys(seen)
}

func (s *Server) handleConsumeStats(req *command) *command {
	group, topic := req.ext("consumerGroup"), req.ext("topic")
	s.mu.Lock()
	defer s.mu.Unlock()
	topics := []string{topic}
	if topic == "" {
		topics = s.groupTopicsLocked(group)
	}
	var pairs [][2]string
	for _, name := range topics {
		t, ok := s.store.topics[name]
		if !ok {
			continue
		}
		for i := 0; i < t.readQueueNums && i < len(t.queues); i++ {
			q := t.queues[i]
			off, ok := s.store.queryOffset(group, name, i)
			if !ok || off < 0 {
				off = 0
			}
			var last int64
			if idx := off - 1 - q.minOffset; off > 0 && idx >= 0 && idx < int64(len(q.msgs)) {
				last = q.msgs[idx].storeTs
			}
			pairs = append(pairs, [2]string{s.mqJSON(name, i),
				fmt.Sprintf(`{"brokerOffset":%d,"consumerOffset":%d,"lastTimestamp":%d}`, q.maxOffset(), off, last)})
		}
	}
	return withBody(success(), []byte(`{"consumeTps":0.0,"offsetTable":`+objectKeyed(pairs)+`}`))
}

func (s *Server) handleConsumerConnections(req *command) *command {
	group := req.ext("consumerGroup")
	s.mu.Lock()
	defer s.mu.Unlock()
	members := s.clients.consumers[group]
	if len(members) == 0 {
		return errorf(codeConsumerNotOnline, "the consumer group[%s] not online", group)
	}
	type connection struct {
		ClientAddr string `json:"clientAddr"`
		ClientID   string `json:"clientId"`
		Language   string `json:"language"`
		Version    int32  `json:"version"`
	}
	body := struct {
		ConnectionSet     []connection              `json:"connectionSet"`
		ConsumeFromWhere  string                    `json:"consumeFromWhere"`
		ConsumeType       string                    `json:"consumeType"`
		MessageModel      string                    `json:"messageModel"`
		SubscriptionTable map[string]map[string]any `json:"subscriptionTable"`
	}{SubscriptionTable: map[string]map[string]any{}}
	for _, id := range s.clients.consumerIDs(group) {
		reg := members[id]
		body.ConnectionSet = append(body.ConnectionSet, connection{ClientAddr: reg.conn.remote.String(), ClientID: id,
			Language: reg.language, Version: reg.version})
		body.ConsumeFromWhere, body.ConsumeType, body.MessageModel = reg.consumeFromWhere, reg.consumeType, reg.messageModel
	}
	for topic, sub := range s.clients.subs[group] {
		tags := []string{}
		if f := parseTagFilter(sub); !f.all {
			tags = sortedKeys(f.tags)
		}
		body.SubscriptionTable[topic] = map[string]any{"classFilterMode": false, "codeSet": []int{}, "expressionType": "TAG",
			"subString": sub, "subVersion": s.started.UnixMilli(), "tagsSet": tags, "topic": topic}
	}
	return withBody(success(), jsonBody(body))
}

func (s *Server) handleConsumeByWho(req *command) *command {
	topic := req.ext("topic")
	s.mu.Lock()
	defer s.mu.Unlock()
	groups := []string{}
	for g, offs := range s.store.offsets {
		for k := range offs {
			if k.topic == topic {
				groups = append(groups, g)
				break
			}
		}
	}
	sort.Strings(groups)
	return withBody(success(), jsonBody(map[string][]string{"groupList": groups}))
}

func (s *Server) handleEarliestStoreTime(req *command) *command {
	s.mu.Lock()
	defer s.mu.Unlock()
	var ts int64 = -1
	if t, ok := s.store.topics[req.ext("topic")]; ok {
		if q := t.queue(int(req.extIntDefault("queueId", 0))); q != nil && len(q.msgs) > 0 {
			ts = q.msgs[0].storeTs
		}
	}
	r := success()
	r.ExtFields["timestamp"] = itoa(ts)
	return r
}

func (s *Server) handleViewMessage(req *command) *command {
	phys, err := req.extInt("offset")
	if err != nil {
		return errorf(codeSystemError, "%v", err)
	}
	s.mu.Lock()
	st := s.store.byPhys(phys)
	s.mu.Unlock()
	if st == nil {
		return errorf(codeSystemError, "can not find message by the offset, %d", phys)
	}
	return withBody(success(), st.enc)
}

// handleQueryMessage looks messages up by key (each of KEYS, and the UNIQ_KEY, as the broker's
// index does) within a store-time range.
func (s *Server) handleQueryMessage(req *command) *command {
	topic, key := req.ext("topic"), req.ext("key")
	maxNum := int(req.extIntDefault("maxNum", 32))
	begin, end := req.extIntDefault("beginTimestamp", 0), req.extIntDefault("endTimestamp", 1<<62)
	uniqOnly := req.ext("_UNIQUE_KEY_QUERY") == "true"
	s.mu.Lock()
	var body []byte
	var lastTs, lastPhys int64
	found := 0
	for _, st := range s.store.log[s.store.logHead:] {
		if found >= maxNum {
			break
		}
		if st.topic != topic || st.storeTs < begin || st.storeTs > end {
			continue
		}
		match := st.uniqKey == key
		if !uniqOnly && !match {
			for _, k := range strings.Fields(st.keys) {
				if k == key {
					match = true
					break
				}
			}
		}
		if match {
			body = append(body, st.enc...)
			found++
			lastTs, lastPhys = st.storeTs, st.phys
		}
	}
	s.mu.Unlock()
	r := success()
	if found == 0 {
		r = errorf(codeQueryNotFound, "can not find message, maybe time range not correct")
		lastTs, lastPhys = 0, 0
	}
	r.ExtFields["indexLastUpdateTimestamp"] = itoa(lastTs)
	r.ExtFields["indexLastUpdatePhyoffset"] = itoa(lastPhys)
	return withBody(r, body)
}

// handleResetOffset is INVOKE_BROKER_TO_RESET_OFFSET (mqadmin resetOffsetByTime): the broker
// computes each queue's offset for the time and tells the group's online consumers to jump
// there (RESET_CONSUMER_CLIENT_OFFSET); with none online it answers CONSUMER_NOT_ONLINE and
// mqadmin falls back to updating the offsets itself.
func (s *Server) handleResetOffset(req *command) *command {
	topic, group := req.ext("topic"), req.ext("group")
	ts := req.extIntDefault("timestamp", -1)
	force := req.ext("isForce") != "false"
	s.mu.Lock()
	_, known := s.clients.subs[group]
	if _, hasOffsets := s.store.offsets[group]; hasOffsets {
		known = true
	}
	if !known {
		s.mu.Unlock()
		return errorf(codeSystemError, "THe consumer group <%s> not exist", group)
	}
	t, ok := s.store.topics[topic]
	if !ok {
		s.mu.Unlock()
		return errorf(codeSystemError, "[reset-offset] request topic[%s] is not exist", topic)
	}
	var pairs [][2]string
	for i := 0; i < t.readQueueNums && i < len(t.queues); i++ {
		q := t.queues[i]
		target := q.maxOffset()
		if ts >= 0 {
			target = q.nearestOffset(ts)
		}
		if cur, ok := s.store.queryOffset(group, topic, i); ok && !force && target >= cur {
			target = cur
		}
		pairs = append(pairs, [2]string{s.mqJSON(topic, i), strconv.FormatInt(target, 10)})
	}
	var conns []*conn
	for _, id := range s.clients.consumerIDs(group) {
		conns = append(conns, s.clients.consumers[group][id].conn)
	}
	s.mu.Unlock()
	if len(conns) == 0 {
		return errorf(codeConsumerNotOnline, "Consumer not online, so can not reset offset, Group: %s Topic: %s Timestamp: %d", group, topic, ts)
	}
	body := []byte(`{"offsetTable":` + objectKeyed(pairs) + `}`)
	for _, c := range conns {
		c.send(reqResetConsumerClientOff, map[string]string{"topic": topic, "group": group,
			"timestamp": itoa(ts), "isForce": strconv.FormatBool(force)}, body)
	}
	return withBody(success(), body)
}
