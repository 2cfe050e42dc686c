package minirmq

import (
	"math/rand/v2"
	"net"
	"strconv"
	"strings"
	"time"
)

// sendHeader is SendMessageRequestHeader; SEND_MESSAGE_V2 and batches use one-letter names.
type sendHeader struct {
	producerGroup  string
	topic          string
	defaultQueues  int
	queueID        int
	sysFlag        int32
	bornTs         int64
	flag           int32
	properties     string
	reconsumeTimes int32
	maxReconsume   int32
	batch          bool
}

var v2Names = map[string]string{"a": "producerGroup", "b": "topic", "c": "defaultTopic", "d": "defaultTopicQueueNums",
	"e": "queueId", "f": "sysFlag", "g": "bornTimestamp", "h": "flag", "i": "properties", "j": "reconsumeTimes",
	"k": "unitMode", "l": "maxReconsumeTimes", "m": "batch"}

func parseSendHeader(req *command) sendHeader {
	ext := req.ExtFields
	if _, short := ext["b"]; short {
		long := make(map[string]string, len(ext))
		for k, v := range ext {
			if n, ok := v2Names[k]; ok {
				k = n
			}
			long[k] = v
		}
		ext = long
	}
	num := func(k string, def int64) int64 {
		n, err := strconv.ParseInt(ext[k], 10, 64)
		if err != nil {
			return def
		}
		return n
	}
	return sendHeader{
		producerGroup:  ext["producerGroup"],
		topic:          ext["topic"],
		defaultQueues:  int(num("defaultTopicQueueNums", 0)),
		queueID:        int(num("queueId", -1)),
		sysFlag:        int32(num("sysFlag", 0)),
		bornTs:         num("bornTimestamp", time.Now().UnixMilli()),
		flag:           int32(num("flag", 0)),
		properties:     ext["properties"],
		reconsumeTimes: int32(num("reconsumeTimes", 0)),
		maxReconsume:   int32(num("maxReconsumeTimes", -1)),
		batch:          ext["batch"] == "true",
	}
}

func (s *Server) handleSend(c *conn, req *command, batch bool) *command {
	h := parseSendHeader(req)
	if err := validateTopic(h.topic); err != nil {
		return errorf(codeSystemError, "%s", err.Error())
	}
	if len(req.Body) > s.cfg.maxBodySize {
		return errorf(codeMessageIllegal, "the message body size over max value, MAX: %d", s.cfg.maxBodySize)
	}
	if len(h.properties) > maxPropertiesLen {
		return errorf(codeMessageIllegal, "message properties length too long, max %d", maxPropertiesLen)
	}
	props := h.properties
	if !batch && propertyOf(props, propCluster) == "" {
		// The broker stamps single sends with its cluster name (batches keep their own properties).
		props += propCluster + string(rune(nameValueSep)) + s.cfg.clusterName + string(rune(propertySep))
	}
	entries := []batchEntry{{flag: h.flag, body: req.Body, properties: props}}
	if batch {
		var err error
		if entries, err = decodeBatch(req.Body); err != nil {
			return errorf(codeMessageIllegal, "bad batch body: %v", err)
		}
		if len(entries) == 0 {
			return errorf(codeMessageIllegal, "the batch is empty")
		}
		if strings.HasPrefix(h.topic, retryPrefix) {
			return errorf(codeMessageIllegal, "batch request does not support retry group %s", h.topic)
		}
		for _, e := range entries {
			if propertyOf(e.properties, propDelay) != "" && propertyOf(e.properties, propDelay) != "0" {
				return errorf(codeMessageIllegal, "the batch message must not have delay level")
			}
			if propertyOf(e.properties, propTranMsg) == "true" {
				return errorf(codeMessageIllegal, "the batch message must not be transactional")
			}
		}
	}

	s.mu.Lock()
	if !s.brokerWrite {
		s.mu.Unlock()
		return errorf(codeNoPermission, "the broker[%s] sending message is forbidden", s.cfg.brokerName)
	}
	topic, ok := s.store.topics[h.topic]
	if !ok {
		if !s.cfg.autoCreate && !strings.HasPrefix(h.topic, retryPrefix) {
			s.mu.Unlock()
			return errorf(codeTopicNotExist, "topic[%s] not exist, apply first please!", h.topic)
		}
		topic = s.store.createTopic(h.topic, s.cfg.queueNums, s.cfg.queueNums, permRW)
	}
	if topic.perm&permWrite == 0 {
		s.mu.Unlock()
		return errorf(codeNoPermission, "the topic[%s] sending message is forbidden", h.topic)
	}
	queueID := h.queueID
	if queueID < 0 {
		queueID = rand.IntN(topic.writeQueueNums)
	}
	if queueID >= topic.writeQueueNums {
		s.mu.Unlock()
		return errorf(codeSystemError, "request queueId[%d] is illegal, %s Producer: %s", queueID, h.topic, c.remote)
	}
	now := time.Now()
	var (
		ids    []string
		first  *stored
		txPrep bool
	)
	// Pulls see the messages as the reply is written (conn.releaseHeld).
	s.store.hold = &c.held
	for _, e := range entries {
		st, isHalf, err := s.storeIncoming(c, h, e, topic, int32(queueID), now)
		if err != nil {
			// Earlier messages of a batch stay stored: the producer sees a failed send and may
			// resend them, a duplicate rather than a loss.
			s.store.hold = nil
			s.mu.Unlock()
			return errorf(codeSystemError, "minirmq: storing the message failed: %v", err)
		}
		if first == nil {
			first = st
		}
		txPrep = txPrep || isHalf
		ids = append(ids, offsetMsgID(s.advertised, st.phys))
	}
	s.store.hold = nil
	if s.cfg.retainBytes > 0 {
		s.store.enforceRetention(s.cfg.retainBytes, 0, now)
	}
	s.mu.Unlock()

	resp := success()
	resp.ExtFields["msgId"] = strings.Join(ids, ",")
	resp.ExtFields["queueId"] = strconv.Itoa(queueID)
	resp.ExtFields["queueOffset"] = itoa(first.queueOffset)
	resp.ExtFields["MSG_REGION"] = "DefaultRegion"
	resp.ExtFields["TRACE_ON"] = "true"
	if txPrep {
		resp.ExtFields["transactionId"] = propertyOf(entries[0].properties, propUniqKey)
	}
	return resp
}

// putArgs is one message on its way into the commit log.
type putArgs struct {
	topic          *topicConfig
	queueID        int32
	flag           int32
	sysFlag        int32
	body           []byte
	properties     string
	bornTs         int64
	bornHost       *net.TCPAddr
	reconsumeTimes int32
	producerGroup  string
}

// storeIncoming stores a message a producer sent.
func (s *Server) storeIncoming(c *conn, h sendHeader, e batchEntry, topic *topicConfig, queueID int32, now time.Time) (*stored, bool, error) {
	a := putArgs{topic: topic, queueID: queueID, flag: e.flag, sysFlag: h.sysFlag, body: e.body,
		properties: e.properties, bornTs: h.bornTs, bornHost: c.remote, reconsumeTimes: h.reconsumeTimes,
		producerGroup: h.producerGroup}
	if strings.HasPrefix(topic.name, retryPrefix) && h.maxReconsume >= 0 && h.reconsumeTimes > h.maxReconsume {
		// A client resending to %RETRY% past its limit: the message is dead.
		a.topic, a.queueID = s.dlqTopic(strings.TrimPrefix(topic.name, retryPrefix)), 0
	}
	return s.putMessage(a, now)
}

// putMessage stores a message, diverting delayed messages to the schedule topic and half
// messages to the transaction topic, as CommitLog.putMessage does. It reports whether the
// message is a half message. Requires s.mu.
func (s *Server) putMessage(a putArgs, now time.Time) (*stored, bool, error) {
	props, sysFlag := a.properties, a.sysFlag
	dest, destQueue := a.topic, a.queueID
	var (
		due    time.Time
		isHalf = sysFlag&sysFlagTxMask == sysFlagTxPrepared || propertyOf(props, propTranMsg) == "true"
	)
	divert := func(extra map[string]string) {
		m := parseProperties(props)
		for k, v := range extra {
			m[k] = v
		}
		m[propRealTopic], m[propRealQueueID] = a.topic.name, strconv.Itoa(int(a.queueID))
		props = formatProperties(m, nil)
	}
	if isHalf {
		divert(nil)
		sysFlag &^= sysFlagTxMask
		dest, destQueue = s.systemTopic(halfTopic, 1), 0
	} else if level, _ := strconv.Atoi(propertyOf(props, propDelay)); level > 0 {
		level = min(level, maxDelayLevels)
		divert(map[string]string{propDelay: strconv.Itoa(level)})
		dest, destQueue = s.systemTopic(scheduleTopic, maxDelayLevels), int32(level-1)
		due = now.Add(s.scaled(delayLevels[level-1]))
	} else if at, ok := timerDeliverTime(props, now); ok {
		divert(nil)
		dest, destQueue = s.systemTopic(timerTopic, 1), 0
		due = now.Add(s.scaled(at.Sub(now)))
	}
	st, err := s.store.append(dest, destQueue, func(qoff, phys int64) *msgFields {
		return &msgFields{topic: dest.name, queueID: destQueue, flag: a.flag, queueOffset: qoff, phys: phys,
			sysFlag: sysFlag, bornTs: a.bornTs, bornHost: a.bornHost, storeTs: now.UnixMilli(),
			storeHost: s.advertised, reconsumeTimes: a.reconsumeTimes, body: a.body, properties: props}
	}, propertyOf(props, propTags), propertyOf(props, propKeys), propertyOf(props, propUniqKey))
	if err != nil {
		return nil, false, err
	}
	if isHalf {
		s.halfs[st.phys] = &halfMessage{phys: st.phys, group: a.producerGroup, nextCheck: now.Add(s.scaled(s.cfg.txTimeout))}
	} else if !due.IsZero() {
		s.sched.add(due, st.phys)
	}
	return st, isHalf, nil
}

// dlqTopic returns a group's dead-letter topic; like the real broker it is created write-only.
// Requires s.mu.
func (s *Server) dlqTopic(group string) *topicConfig {
	name := dlqPrefix + group
	if t, ok := s.store.topics[name]; ok {
		return t
	}
	return s.store.createTopic(name, 1, 1, permWrite)
}

// systemTopic returns (creating on first use) a broker-internal topic. Requires s.mu.
func (s *Server) systemTopic(name string, queues int) *topicConfig {
	if t, ok := s.store.topics[name]; ok {
		return t
	}
	return s.store.createTopic(name, queues, queues, permRW)
}

// timerDeliverTime reads RocketMQ 5.x timer properties (absolute or relative delivery time).
func timerDeliverTime(props string, now time.Time) (time.Time, bool) {
	if v := propertyOf(props, propTimerDeliver); v != "" {
		if ms, err := strconv.ParseInt(v, 10, 64); err == nil {
			return time.UnixMilli(ms), true
		}
	}
	if v := propertyOf(props, propTimerDelaySec); v != "" {
		if sec, err := strconv.ParseInt(v, 10, 64); err == nil {
			return now.Add(time.Duration(sec) * time.Second), true
		}
	}
	if v := propertyOf(props, propTimerDelayMs); v != "" {
		if ms, err := strconv.ParseInt(v, 10, 64); err == nil {
			return now.Add(time.Duration(ms) * time.Millisecond), true
		}
	}
	return time.Time{}, false
}
