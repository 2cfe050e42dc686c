package minirmq

import (
	"strconv"
	"time"
)

// End-transaction types (MessageSysFlag.TRANSACTION_*_TYPE as sent in commitOrRollback).
const (
	txUnknown  = 0
	txCommit   = 8
	txRollback = 12
)

// halfMessage is a prepared transactional message waiting for commit or rollback.
type halfMessage struct {
	phys      int64
	group     string
	checks    int
	nextCheck time.Time
}

func (s *Server) handleEndTransaction(req *command) *command {
	phys, err := req.extInt("commitLogOffset")
	if err != nil {
		return errorf(codeSystemError, "%v", err)
	}
	kind := req.extIntDefault("commitOrRollback", txUnknown)
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.halfs[phys]
	st := s.store.byPhys(phys)
	if !ok || st == nil {
		return errorf(codeSystemError, "Find prepared transaction message failed")
	}
	switch kind {
	case txRollback:
		delete(s.halfs, phys)
	case txCommit:
		m, err := decodeStored(st.enc)
		if err != nil {
			return errorf(codeSystemError, "stored half message is corrupt: %v", err)
		}
		m.sysFlag = m.sysFlag&^sysFlagTxMask | sysFlagTxCommit
		if err := s.moveToRealTopicLocked(m, time.Now(), phys, propRealTopic, propRealQueueID, propTranMsg); err != nil {
			// The half message stays: the check-back asks the producer again later.
			return errorf(codeSystemError, "minirmq: storing the committed message failed: %v", err)
		}
		delete(s.halfs, phys)
	}
	// Any other state (unknown) keeps the half message: the check-back loop asks the producer later.
	return success()
}

// transactionCheckLoop asks producers about half messages left unresolved past the transaction
// timeout (CHECK_TRANSACTION_STATE), and discards them after the maximum number of checks.
func (s *Server) transactionCheckLoop() {
	defer s.loopWG.Done()
	tick := min(max(s.scaled(time.Second), 10*time.Millisecond), time.Second)
	ticker := time.NewTicker(tick)
	defer ticker.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-ticker.C:
		}
		type check struct {
			conn *conn
			ext  map[string]string
			body []byte
		}
		var checks []check
		now := time.Now()
		s.mu.Lock()
		for phys, h := range s.halfs {
			if now.Before(h.nextCheck) {
				continue
			}
			if h.checks >= s.cfg.txMaxChecks {
				delete(s.halfs, phys)
				continue
			}
			var target *conn
			for _, id := range sortedKeys(s.clients.producers[h.group]) {
				target = s.clients.producers[h.group][id]
				break
			}
			if target == nil {
				continue // no producer of the group online: ask once one is
			}
			st := s.store.byPhys(phys)
			if st == nil {
				delete(s.halfs, phys)
				continue
			}
			m, err := decodeStored(st.enc)
			if err != nil {
				delete(s.halfs, phys)
				continue
			}
			props := parseProperties(m.properties)
			qid, _ := strconv.Atoi(props[propRealQueueID])
			m.topic, m.queueID = props[propRealTopic], int32(qid)
			uniq := props[propUniqKey]
			h.checks++
			h.nextCheck = now.Add(s.scaled(s.cfg.txInterval))
			checks = append(checks, check{conn: target, body: encodeStored(m), ext: map[string]string{
				"tranStateTableOffset": itoa(st.queueOffset),
				"commitLogOffset":      itoa(phys),
				"msgId":                uniq,
				"transactionId":        uniq,
				"offsetMsgId":          offsetMsgID(m.storeHost, phys),
			}})
		}
		s.mu.Unlock()
		for _, c := range checks {
			c.conn.send(reqCheckTransactionState, c.ext, c.body)
		}
	}
}
