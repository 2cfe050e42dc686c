package minirmq

import (
	"encoding/json"
	"sort"
	"strings"
	"time"
)

// Client bookkeeping: heartbeats register producers and consumers per group; the broker tells a
// group's consumers when its membership changes so they rebalance at once.

type clientRegistry struct {
	// consumers: group -> client id -> its registration.
	consumers map[string]map[string]*consumerReg
	// producers: group -> client id -> connection (for transaction check-backs).
	producers map[string]map[string]*conn
	// subs: group -> topic -> subscription expression, from the latest heartbeat.
	subs map[string]map[string]string
}

type consumerReg struct {
	conn             *conn
	messageModel     string
	consumeType      string
	consumeFromWhere string
	language         string
	version          int32
	lastSeen         time.Time
	// expires is set when the member's connection closed while KeepClosedConsumers was on:
	// it stays listed until then (zero: a live member).
	expires time.Time
}

func newClientRegistry() *clientRegistry {
	return &clientRegistry{consumers: map[string]map[string]*consumerReg{}, producers: map[string]map[string]*conn{},
		subs: map[string]map[string]string{}}
}

func (r *clientRegistry) subscription(group, topic string) (string, bool) {
	sub, ok := r.subs[group][topic]
	return sub, ok
}

// consumerIDs lists a group's members in a stable order, forgetting those kept past their
// connection (KeepClosedConsumers) whose time is up.
func (r *clientRegistry) consumerIDs(group string) []string {
	now := time.Now()
	ids := make([]string, 0, len(r.consumers[group]))
	for id, reg := range r.consumers[group] {
		if !reg.expires.IsZero() && now.After(reg.expires) {
			delete(r.consumers[group], id)
			continue
		}
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids
}

type heartbeatBody struct {
	ClientID        string `json:"clientID"`
	ProducerDataSet []struct {
		GroupName string `json:"groupName"`
	} `json:"producerDataSet"`
	ConsumerDataSet []struct {
		GroupName           string          `json:"groupName"`
		MessageModel        json.RawMessage `json:"messageModel"`
		ConsumeType         json.RawMessage `json:"consumeType"`
		ConsumeFromWhere    json.RawMessage `json:"consumeFromWhere"`
		SubscriptionDataSet []struct {
			Topic          string `json:"topic"`
			SubString      string `json:"subString"`
			ExpressionType string `json:"expressionType"`
		} `json:"subscriptionDataSet"`
	} `json:"consumerDataSet"`
}

func (s *Server) handleHeartbeat(c *conn, req *command) *command {
	var hb heartbeatBody
	if err := json.Unmarshal(req.Body, &hb); err != nil {
		return errorf(codeSystemError, "heartbeat body is not valid JSON: %v", err)
	}
	if hb.ClientID == "" {
		return errorf(codeSystemError, "heartbeat without clientID")
	}
	now := time.Now()
	var changed []string
	s.mu.Lock()
	for _, p := range hb.ProducerDataSet {
		g := s.clients.producers[p.GroupName]
		if g == nil {
			g = map[string]*conn{}
			s.clients.producers[p.GroupName] = g
		}
		g[hb.ClientID] = c
	}
	for _, cd := range hb.ConsumerDataSet {
		g := s.clients.consumers[cd.GroupName]
		if g == nil {
			g = map[string]*consumerReg{}
			s.clients.consumers[cd.GroupName] = g
		}
		reg, known := g[hb.ClientID]
		if !known || reg.conn != c {
			changed = append(changed, cd.GroupName)
		}
		g[hb.ClientID] = &consumerReg{conn: c, messageModel: enumName(cd.MessageModel), consumeType: enumName(cd.ConsumeType),
			consumeFromWhere: enumName(cd.ConsumeFromWhere), language: req.Language, version: req.Version, lastSeen: now}
		subs := map[string]string{}
		for _, sd := range cd.SubscriptionDataSet {
			subs[sd.Topic] = sd.SubString
		}
		s.clients.subs[cd.GroupName] = subs
		// The broker creates the group's retry topic on its first heartbeat, so its route exists
		// before the first message is sent back.
		s.systemTopic(retryPrefix+cd.GroupName, 1)
	}
	notify := s.groupConnsLocked(changed)
	s.mu.Unlock()
	sendNotifications(notify)
	return success()
}

// enumName reads an enum the Java client writes as a string and the Go client as a string or
// number, and names it the way the real broker answers (CLUSTERING, CONSUME_FROM_FIRST_OFFSET).
func enumName(raw json.RawMessage) string {
	v := strings.Trim(string(raw), `"`)
	switch strings.ToLower(v) {
	case "clustering":
		return "CLUSTERING"
	case "broadcasting":
		return "BROADCASTING"
	}
	return v
}

func (s *Server) handleUnregister(req *command) *command {
	id := req.ext("clientID")
	s.mu.Lock()
	var changed []string
	if g := req.ext("consumerGroup"); g != "" {
		if _, ok := s.clients.consumers[g][id]; ok {
			delete(s.clients.consumers[g], id)
			changed = append(changed, g)
		}
	}
	if g := req.ext("producerGroup"); g != "" {
		delete(s.clients.producers[g], id)
	}
	notify := s.groupConnsLocked(changed)
	s.mu.Unlock()
	sendNotifications(notify)
	return success()
}

// connectionClosed forgets every client registered over c and tells their groups (with
// KeepClosedConsumers on, its consumers stay listed for a while instead).
func (s *Server) connectionClosed(c *conn) {
	s.mu.Lock()
	var changed []string
	for group, members := range s.clients.consumers {
		for id, reg := range members {
			if reg.conn != c {
				continue
			}
			if s.keepClosed > 0 {
				reg.expires = time.Now().Add(s.keepClosed)
				continue
			}
			delete(members, id)
			changed = append(changed, group)
		}
	}
	for _, members := range s.clients.producers {
		for id, pc := range members {
			if pc == c {
				delete(members, id)
			}
		}
	}
	notify := s.groupConnsLocked(changed)
	s.mu.Unlock()
	sendNotifications(notify)
}

type notification struct {
	conn  *conn
	group string
}

// groupConnsLocked lists the connections of the given groups' consumers. Requires s.mu.
func (s *Server) groupConnsLocked(groups []string) []notification {
	var out []notification
	seen := map[string]bool{}
	for _, g := range groups {
		if seen[g] {
			continue
		}
		seen[g] = true
		for _, reg := range s.clients.consumers[g] {
			if reg.expires.IsZero() {
				out = append(out, notification{conn: reg.conn, group: g})
			}
		}
	}
	return out
}

// sendNotifications sends NOTIFY_CONSUMER_IDS_CHANGED; clients do not reply to it.
func sendNotifications(ns []notification) {
	for _, n := range ns {
		n.conn.send(reqNotifyConsumerIdsChanged, map[string]string{"consumerGroup": n.group}, nil)
	}
}

func (s *Server) handleConsumerList(req *command) *command {
	group := req.ext("consumerGroup")
	s.mu.Lock()
	ids := s.clients.consumerIDs(group)
	s.mu.Unlock()
	if len(ids) == 0 {
		return errorf(codeSystemError, "no consumer for this group, %s", group)
	}
	return withBody(success(), jsonBody(map[string][]string{"consumerIdList": ids}))
}

// Queue locks for orderly consumption (RebalanceLockManager).

type mqKey struct {
	Topic      string `json:"topic"`
	BrokerName string `json:"brokerName"`
	QueueID    int    `json:"queueId"`
}

type lockEntry struct {
	clientID string
	updated  time.Time
}

type lockBody struct {
	ConsumerGroup string  `json:"consumerGroup"`
	ClientID      string  `json:"clientId"`
	MQSet         []mqKey `json:"mqSet"`
}

func (s *Server) handleLock(req *command) *command {
	var b lockBody
	if err := json.Unmarshal(req.Body, &b); err != nil {
		return errorf(codeSystemError, "lock body is not valid JSON: %v", err)
	}
	now := time.Now()
	locked := []mqKey{}
	s.mu.Lock()
	g := s.locks[b.ConsumerGroup]
	if g == nil {
		g = map[mqKey]lockEntry{}
		s.locks[b.ConsumerGroup] = g
	}
	for _, mq := range b.MQSet {
		cur, ok := g[mq]
		if !ok || cur.clientID == b.ClientID || now.Sub(cur.updated) > s.cfg.lockTTL {
			g[mq] = lockEntry{clientID: b.ClientID, updated: now}
			locked = append(locked, mq)
		}
	}
	s.mu.Unlock()
	return withBody(success(), jsonBody(map[string][]mqKey{"lockOKMQSet": locked}))
}

func (s *Server) handleUnlock(req *command) *command {
	var b lockBody
	if err := json.Unmarshal(req.Body, &b); err != nil {
		return errorf(codeSystemError, "unlock body is not valid JSON: %v", err)
	}
	s.mu.Lock()
	for _, mq := range b.MQSet {
		if cur, ok := s.locks[b.ConsumerGroup][mq]; ok && cur.clientID == b.ClientID {
			delete(s.locks[b.ConsumerGroup], mq)
		}
	}
	s.mu.Unlock()
	return success()
}

// KeepClosedConsumers makes consumers whose connection closes stay members of their groups for
// d (0 turns it off, the default), reproducing a race of the real broker: it handles heartbeats
// and connection closes on different threads, so a heartbeat that a closing client sent last can
// be handled after the close and register the client on the dead connection. That member is
// listed (GET_CONSUMER_LIST_BY_GROUP) until the broker's scan expires idle connections, about
// 120 s later, and the group's other consumers leave the queues they assign to it unread until
// then. Seen on RocketMQ 4.9.4 when consumers are closed right after they start.
func (s *Server) KeepClosedConsumers(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.keepClosed = d
}
