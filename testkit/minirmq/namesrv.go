package minirmq

// Name server requests: routes, cluster info, topic list.

type brokerData struct {
	Cluster     string            `json:"cluster"`
	BrokerName  string            `json:"brokerName"`
	BrokerAddrs map[string]string `json:"brokerAddrs"`
}

type queueData struct {
	BrokerName     string `json:"brokerName"`
	ReadQueueNums  int    `json:"readQueueNums"`
	WriteQueueNums int    `json:"writeQueueNums"`
	Perm           int    `json:"perm"`
	TopicSysFlag   int    `json:"topicSysFlag"`
}

type routeData struct {
	BrokerDatas       []brokerData        `json:"brokerDatas"`
	FilterServerTable map[string][]string `json:"filterServerTable"`
	QueueDatas        []queueData         `json:"queueDatas"`
}

// brokerDataLocked describes this broker. Requires s.mu.
func (s *Server) brokerDataLocked() brokerData {
	return brokerData{Cluster: s.cfg.clusterName, BrokerName: s.cfg.brokerName,
		BrokerAddrs: map[string]string{"0": s.advertised.String()}}
}

func (s *Server) handleRoute(req *command) *command {
	topic := req.ext("topic")
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.store.topics[topic]
	if !ok {
		return errorf(codeTopicNotExist, "No topic route info in name server for the topic: %s"+faqSuffix, topic)
	}
	rd := routeData{
		BrokerDatas:       []brokerData{s.brokerDataLocked()},
		FilterServerTable: map[string][]string{},
		QueueDatas: []queueData{{BrokerName: s.cfg.brokerName, ReadQueueNums: t.readQueueNums,
			WriteQueueNums: t.writeQueueNums, Perm: t.perm}},
	}
	return withBody(success(), jsonBody(rd))
}

func (s *Server) handleClusterInfo() *command {
	s.mu.Lock()
	defer s.mu.Unlock()
	body := map[string]any{
		"brokerAddrTable":  map[string]brokerData{s.cfg.brokerName: s.brokerDataLocked()},
		"clusterAddrTable": map[string][]string{s.cfg.clusterName: {s.cfg.brokerName}},
	}
	return withBody(success(), jsonBody(body))
}

func (s *Server) handleTopicList() *command {
	s.mu.Lock()
	defer s.mu.Unlock()
	return withBody(success(), jsonBody(map[string][]string{"topicList": sortedKeys(s.store.topics)}))
}
