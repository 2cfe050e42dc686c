package minirmq

import (
	"strconv"
	"time"
)

// handleSendBack is CONSUMER_SEND_MSG_BACK: a consumer gives a message back for a later retry.
// It goes to %RETRY%<group> after a delay level (0 means 3 + reconsume times, so the first retry
// comes after 10 s), or to %DLQ%<group> once reconsume times reach the maximum or the level is
// negative. The client ignores this reply's code, so failing here would lose the message: every
// message that still exists is accepted.
func (s *Server) handleSendBack(req *command) *command {
	group := req.ext("group")
	phys, err := req.extInt("offset")
	if err != nil {
		return errorf(codeSystemError, "%v", err)
	}
	delayLevel := int(req.extIntDefault("delayLevel", 0))
	maxTimes := int32(req.extIntDefault("maxReconsumeTimes", 16))
	if maxTimes < 0 {
		maxTimes = 16
	}
	originMsgID := req.ext("originMsgId")

	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.store.byPhys(phys)
	if st == nil {
		return errorf(codeSystemError, "look message by offset failed, %d", phys)
	}
	m, err := decodeStored(st.enc)
	if err != nil {
		return errorf(codeSystemError, "stored message at %d is corrupt: %v", phys, err)
	}
	props := parseProperties(m.properties)
	if props[propRetryTopic] == "" {
		props[propRetryTopic] = m.topic
	}
	if originMsgID == "" {
		originMsgID = offsetMsgID(m.storeHost, m.phys)
	}
	props[propOriginMsgID] = originMsgID
	delete(props, propRealTopic)
	delete(props, propRealQueueID)

	a := putArgs{flag: m.flag, sysFlag: m.sysFlag, body: m.body, bornTs: m.bornTs, bornHost: m.bornHost,
		reconsumeTimes: m.reconsumeTimes + 1}
	if m.reconsumeTimes >= maxTimes || delayLevel < 0 {
		delete(props, propDelay)
		a.topic = s.dlqTopic(group)
	} else {
		if delayLevel == 0 {
			delayLevel = 3 + int(m.reconsumeTimes)
		}
		props[propDelay] = strconv.Itoa(min(delayLevel, maxDelayLevels))
		a.topic = s.systemTopic(retryPrefix+group, 1)
	}
	a.properties = formatProperties(props, nil)
	if _, _, err := s.putMessage(a, time.Now()); err != nil {
		return errorf(codeSystemError, "minirmq: storing the retry message failed: %v", err)
	}
	return success()
}
