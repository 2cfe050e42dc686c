package minirmq

import (
	"fmt"
	"net"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Admin requests: topics and broker configuration.

func (s *Server) handleCreateTopic(req *command) *command {
	topic := req.ext("topic")
	if err := validateTopic(topic); err != nil {
		return errorf(codeSystemError, "%s", err.Error())
	}
	if topic == defaultTopic {
		return errorf(codeSystemError, "the topic[%s] is conflict with system topic.", topic)
	}
	read := int(req.extIntDefault("readQueueNums", int64(s.cfg.queueNums)))
	write := int(req.extIntDefault("writeQueueNums", int64(s.cfg.queueNums)))
	perm := int(req.extIntDefault("perm", permRW))
	if read <= 0 || write <= 0 {
		return errorf(codeSystemError, "queue numbers must be positive: read %d, write %d", read, write)
	}
	s.mu.Lock()
	s.store.createTopic(topic, read, write, perm)
	s.mu.Unlock()
	if err := s.saveAdminChange(); err != nil {
		return errorf(codeSystemError, "minirmq: topic %s created but not saved: %v", topic, err)
	}
	return success()
}

func (s *Server) handleDeleteTopic(req *command) *command {
	s.mu.Lock()
	s.deleteTopicLocked(req.ext("topic"))
	s.mu.Unlock()
	if err := s.saveAdminChange(); err != nil {
		return errorf(codeSystemError, "minirmq: topic %s deleted but not saved: %v", req.ext("topic"), err)
	}
	return success()
}

func (s *Server) deleteTopicLocked(topic string) {
	delete(s.store.topics, topic)
	for _, g := range s.store.offsets {
		for k := range g {
			if k.topic == topic {
				delete(g, k)
			}
		}
	}
}

// handleUpdateBrokerConfig takes a properties body ("key=value" lines). brokerIP1 and
// listenPort change the advertised address at once, as they do together with brokerPermission
// on a real broker; brokerPermission without the write bit makes sends fail with NO_PERMISSION.
func (s *Server) handleUpdateBrokerConfig(req *command) *command {
	kv := parsePropertiesText(string(req.Body))
	s.mu.Lock()
	err := s.applyBrokerConfigLocked(kv)
	s.mu.Unlock()
	if err != nil {
		return errorf(codeSystemError, "%v", err)
	}
	if err := s.saveAdminChange(); err != nil {
		return errorf(codeSystemError, "minirmq: broker config applied but not saved: %v", err)
	}
	return success()
}

// applyBrokerConfigLocked applies runtime broker config entries and keeps them, so that
// GET_BROKER_CONFIG and, with a data directory, the next start see them (the real broker
// writes them to its broker.conf). Requires s.mu.
func (s *Server) applyBrokerConfigLocked(kv map[string]string) error {
	host, port, _ := net.SplitHostPort(s.advertised.String())
	if v, ok := kv["brokerIP1"]; ok {
		host = v
	}
	if v, ok := kv["listenPort"]; ok {
		port = v
	}
	adv, err := resolveAdvertised(net.JoinHostPort(host, port))
	if err != nil {
		return err
	}
	writable := s.brokerWrite
	if v, ok := kv["brokerPermission"]; ok {
		perm, err := strconv.Atoi(v)
		if err != nil {
			return fmt.Errorf("brokerPermission %q is not a number", v)
		}
		writable = perm&permWrite != 0
	}
	s.advertised, s.brokerWrite = adv, writable
	for k, v := range kv {
		s.brokerConf[k] = v
	}
	return nil
}

func parsePropertiesText(text string) map[string]string {
	kv := map[string]string{}
	for _, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if k, v, ok := strings.Cut(line, "="); ok {
			kv[strings.TrimSpace(k)] = strings.TrimSpace(v)
		}
	}
	return kv
}

func (s *Server) handleGetBrokerConfig() *command {
	s.mu.Lock()
	defer s.mu.Unlock()
	host, port, _ := net.SplitHostPort(s.advertised.String())
	conf := map[string]string{
		"brokerClusterName":     s.cfg.clusterName,
		"brokerName":            s.cfg.brokerName,
		"brokerId":              "0",
		"brokerIP1":             host,
		"listenPort":            port,
		"autoCreateTopicEnable": strconv.FormatBool(s.cfg.autoCreate),
		"maxMessageSize":        strconv.Itoa(s.cfg.maxBodySize),
		"defaultTopicQueueNums": strconv.Itoa(s.cfg.queueNums),
		"messageDelayLevel":     "1s 5s 10s 30s 1m 2m 3m 4m 5m 6m 7m 8m 9m 10m 20m 30m 1h 2h",
		"brokerPermission":      strconv.Itoa(map[bool]int{true: 6, false: 4}[s.brokerWrite]),
	}
	for k, v := range s.brokerConf {
		conf[k] = v
	}
	keys := make([]string, 0, len(conf))
	for k := range conf {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "%s=%s\n", k, conf[k])
	}
	r := withBody(success(), []byte(b.String()))
	r.ExtFields["version"] = fmt.Sprintf(`{"counter":0,"timestamp":%d}`, time.Now().UnixMilli())
	return r
}

func (s *Server) handleSubscriptionGroups() *command {
	s.mu.Lock()
	defer s.mu.Unlock()
	table := map[string]any{}
	for g := range s.clients.subs {
		table[g] = map[string]any{"groupName": g, "consumeEnable": true, "consumeBroadcastEnable": true,
			"retryQueueNums": 1, "retryMaxTimes": 16, "brokerId": 0, "whichBrokerWhenConsumeSlowly": 1,
			"notifyConsumerIdsChangedEnable": true}
	}
	return withBody(success(), jsonBody(map[string]any{
		"subscriptionGroupTable": table,
		"dataVersion":            map[string]any{"timestamp": time.Now().UnixMilli(), "counter": 0},
	}))
}
