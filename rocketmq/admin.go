package rocketmq

import (
	"context"
	"crypto/hmac"
	"crypto/sha1"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/apache/rocketmq-client-go/v2/primitive"
)

// Request and response codes the Admin sends beyond what rocketmq-client-go's admin API offers.
const (
	codeSuccess              = 0
	codeQueryNotFound        = 22
	codeConsumerNotOnline    = 206
	codeQueryMessage         = 12
	codeUpdateConsumerOffset = 15
	codeSearchOffsetByTime   = 29
	codeViewMessageByID      = 33
	codeGetBrokerClusterInfo = 106
	codeUpdateAndCreateTopic = 17
	codeGetAllTopicList      = 206
	codeDeleteTopicInBroker  = 215
	codeDeleteTopicInNamesrv = 216
	codeGetTopicStatsInfo    = 202
	codeGetConsumerConnList  = 203
	codeGetConsumeStats      = 208
	codeInvokeResetOffset    = 222
)

// AdminConfig configures an Admin.
type AdminConfig struct {
	// NameServers are the name server addresses (host:port). Required.
	NameServers []string
	// Credentials sign every broker request when the brokers run with ACL.
	Credentials primitive.Credentials
	// Timeout bounds each request to a name server or broker. Default 5 s.
	Timeout time.Duration
}

func (c *AdminConfig) setDefaults() {
	if c.Timeout <= 0 {
		c.Timeout = 5 * time.Second
	}
}

// Validate reports what is missing or wrong in the configuration.
func (c AdminConfig) Validate() error {
	if len(c.NameServers) == 0 {
		return errors.New("rocketmq: AdminConfig.NameServers is empty")
	}
	for _, ns := range c.NameServers {
		if _, _, err := net.SplitHostPort(ns); err != nil {
			return fmt.Errorf("rocketmq: AdminConfig.NameServers: %q is not host:port", ns)
		}
	}
	if (c.Credentials.AccessKey == "") != (c.Credentials.SecretKey == "") {
		return errors.New("rocketmq: AdminConfig.Credentials need both AccessKey and SecretKey")
	}
	return nil
}

// Admin manages topics, consumer groups and messages on any RocketMQ 4.x/5.x cluster (and
// minirmq): what mqadmin and dashboards show, from Go. It speaks the name servers' and brokers'
// remoting requests itself: rocketmq-client-go v2.1.2's admin API lacks most of these calls, and
// the ones it has are never signed (its WithCredentials installs no ACL hook), so they fail on
// brokers with ACL.
type Admin struct {
	cfg AdminConfig

	mu     sync.Mutex
	closed bool
}

// NewAdmin validates the configuration and returns an Admin. It connects lazily.
func NewAdmin(cfg AdminConfig) (*Admin, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Admin{cfg: cfg}, nil
}

// Close makes later calls fail with a clear error. It is idempotent; an Admin holds no
// connection between calls.
func (a *Admin) Close() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.closed = true
	return nil
}

var errAdminClosed = errors.New("rocketmq: Admin is closed")

func (a *Admin) checkOpen() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed {
		return errAdminClosed
	}
	return nil
}

// call sends one request, signed when credentials are set, within the configured timeout.
func (a *Admin) call(ctx context.Context, addr string, code int, ext map[string]string, body []byte) (int, string, []byte, error) {
	resp, respBody, err := a.callFull(ctx, addr, code, ext, body)
	return resp.Code, resp.Remark, respBody, err
}

// callFull is call returning the whole response header.
func (a *Admin) callFull(ctx context.Context, addr string, code int, ext map[string]string, body []byte) (remotingHeader, []byte, error) {
	if err := a.checkOpen(); err != nil {
		return remotingHeader{}, nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, a.cfg.Timeout)
	defer cancel()
	if ext == nil {
		ext = map[string]string{}
	}
	if c := a.cfg.Credentials; !c.IsEmpty() {
		signRequest(ext, body, c)
	}
	return invokeFull(ctx, addr, code, ext, body)
}

// signRequest adds ACL fields: HMAC-SHA1 over the sorted header values, then the body.
func signRequest(ext map[string]string, body []byte, c primitive.Credentials) {
	ext["AccessKey"] = c.AccessKey
	if c.SecurityToken != "" {
		ext["SecurityToken"] = c.SecurityToken
	}
	keys := make([]string, 0, len(ext))
	for k := range ext {
		if k != "Signature" {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	mac := hmac.New(sha1.New, []byte(c.SecretKey))
	for _, k := range keys {
		mac.Write([]byte(ext[k]))
	}
	mac.Write(body)
	ext["Signature"] = base64.StdEncoding.EncodeToString(mac.Sum(nil))
}

// callNameServers tries each name server until one answers.
func (a *Admin) callNameServers(ctx context.Context, code int, ext map[string]string) (int, string, []byte, error) {
	var lastErr error
	for _, ns := range a.cfg.NameServers {
		c, remark, body, err := a.call(ctx, ns, code, ext, nil)
		if err == nil {
			return c, remark, body, nil
		}
		lastErr = err
	}
	return 0, "", nil, fmt.Errorf("rocketmq: no name server answered: %w", lastErr)
}

func validTopicName(topic string) error {
	if strings.TrimSpace(topic) == "" {
		return errors.New("rocketmq: topic is empty")
	}
	return nil
}

// TopicOption adjusts a topic created by Admin.CreateTopic.
type TopicOption func(*topicSpec)

type topicSpec struct {
	readQueues, writeQueues, perm int
	brokers                       []string
}

// WithQueues sets the read and write queue count (default 4).
func WithQueues(n int) TopicOption {
	return func(s *topicSpec) { s.readQueues, s.writeQueues = n, n }
}

// WithPermission sets the topic permission bits: 2 write, 4 read, 6 both (default 6).
func WithPermission(perm int) TopicOption { return func(s *topicSpec) { s.perm = perm } }

// OnBrokers creates the topic on these broker addresses instead of every master in the cluster.
func OnBrokers(addrs ...string) TopicOption { return func(s *topicSpec) { s.brokers = addrs } }

// CreateTopic creates (or updates) a topic on every master broker of the cluster and waits until
// the name servers route it.
func (a *Admin) CreateTopic(ctx context.Context, topic string, opts ...TopicOption) error {
	if err := validTopicName(topic); err != nil {
		return err
	}
	spec := topicSpec{readQueues: 4, writeQueues: 4, perm: permReadWrite}
	for _, o := range opts {
		o(&spec)
	}
	if spec.readQueues <= 0 || spec.writeQueues <= 0 {
		return fmt.Errorf("rocketmq: topic %q: queue counts must be positive, got read %d write %d", topic, spec.readQueues, spec.writeQueues)
	}
	brokers := spec.brokers
	if len(brokers) == 0 {
		cluster, err := a.Brokers(ctx)
		if err != nil {
			return err
		}
		for _, b := range cluster {
			brokers = append(brokers, b.Addr)
		}
	}
	ext := map[string]string{"topic": topic, "defaultTopic": defaultTopic, "readQueueNums": strconv.Itoa(spec.readQueues),
		"writeQueueNums": strconv.Itoa(spec.writeQueues), "perm": strconv.Itoa(spec.perm),
		"topicFilterType": "SINGLE_TAG", "topicSysFlag": "0", "order": "false"}
	for _, b := range brokers {
		code, remark, _, err := a.call(ctx, b, codeUpdateAndCreateTopic, maps.Clone(ext), nil)
		if err != nil {
			return fmt.Errorf("rocketmq: create topic %q on %s: %w", topic, b, err)
		}
		if code != codeSuccess {
			return fmt.Errorf("rocketmq: create topic %q on %s: code %d: %s", topic, b, code, remark)
		}
	}
	// The broker registers the topic with the name servers asynchronously: the route proves it,
	// once it shows the queues and permission asked for.
	for {
		route, err := a.Route(ctx, topic)
		if err == nil && routeMatches(route, spec) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("rocketmq: topic %q has no route after creating it on %v: %w", topic, brokers, errors.Join(ctx.Err(), err))
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func routeMatches(route TopicRoute, spec topicSpec) bool {
	for _, q := range route.Queues {
		if q.Perm == spec.perm && q.ReadQueues == spec.readQueues && q.WriteQueues == spec.writeQueues {
			return true
		}
	}
	return false
}

// DeleteTopic removes a topic from every broker hosting it and from the name servers.
func (a *Admin) DeleteTopic(ctx context.Context, topic string) error {
	if err := validTopicName(topic); err != nil {
		return err
	}
	route, err := a.Route(ctx, topic)
	if err != nil {
		return err
	}
	for _, addr := range route.Brokers {
		if err := a.expectSuccess(ctx, addr, codeDeleteTopicInBroker, map[string]string{"topic": topic}); err != nil {
			return fmt.Errorf("rocketmq: delete topic %q on %s: %w", topic, addr, err)
		}
	}
	for _, ns := range a.cfg.NameServers {
		if err := a.expectSuccess(ctx, ns, codeDeleteTopicInNamesrv, map[string]string{"topic": topic}); err != nil {
			return fmt.Errorf("rocketmq: delete topic %q on name server %s: %w", topic, ns, err)
		}
	}
	return nil
}

// expectSuccess sends a request whose only answer of interest is success.
func (a *Admin) expectSuccess(ctx context.Context, addr string, code int, ext map[string]string) error {
	c, remark, _, err := a.call(ctx, addr, code, ext, nil)
	if err != nil {
		return err
	}
	if c != codeSuccess {
		return fmt.Errorf("code %d: %s", c, remark)
	}
	return nil
}

// Topics lists every topic the name servers know, sorted.
func (a *Admin) Topics(ctx context.Context) ([]string, error) {
	code, remark, body, err := a.callNameServers(ctx, codeGetAllTopicList, nil)
	if err != nil {
		return nil, err
	}
	if code != codeSuccess {
		return nil, fmt.Errorf("rocketmq: list topics: code %d: %s", code, remark)
	}
	var list struct {
		TopicList []string `json:"topicList"`
	}
	if err := json.Unmarshal(body, &list); err != nil {
		return nil, fmt.Errorf("rocketmq: decode topic list: %w", err)
	}
	sort.Strings(list.TopicList)
	return list.TopicList, nil
}

// Broker is one master broker of the cluster.
type Broker struct {
	Cluster string
	Name    string
	Addr    string
}

// Brokers lists the master brokers the name servers know.
func (a *Admin) Brokers(ctx context.Context) ([]Broker, error) {
	code, remark, body, err := a.callNameServers(ctx, codeGetBrokerClusterInfo, nil)
	if err != nil {
		return nil, err
	}
	if code != codeSuccess {
		return nil, fmt.Errorf("rocketmq: cluster info: code %d: %s", code, remark)
	}
	var info struct {
		BrokerAddrTable map[string]struct {
			Cluster     string            `json:"cluster"`
			BrokerName  string            `json:"brokerName"`
			BrokerAddrs map[string]string `json:"brokerAddrs"`
		} `json:"brokerAddrTable"`
	}
	if err := json.Unmarshal(unquotedKey.ReplaceAll(body, []byte(`$1"$2":`)), &info); err != nil {
		return nil, fmt.Errorf("rocketmq: decode cluster info: %w", err)
	}
	var out []Broker
	for _, b := range info.BrokerAddrTable {
		if addr := b.BrokerAddrs["0"]; addr != "" {
			out = append(out, Broker{Cluster: b.Cluster, Name: b.BrokerName, Addr: addr})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// TopicRoute is where a topic lives: its brokers and their queues.
type TopicRoute struct {
	// Brokers maps broker names to master addresses.
	Brokers map[string]string
	Queues  []QueueData
}

// QueueData is one broker's share of a topic.
type QueueData struct {
	Broker      string
	ReadQueues  int
	WriteQueues int
	Perm        int
}

// ErrTopicNotFound is returned for a topic no name server routes.
var ErrTopicNotFound = errors.New("rocketmq: topic not found")

// Route returns the topic's route as the name servers give it to clients.
func (a *Admin) Route(ctx context.Context, topic string) (TopicRoute, error) {
	if err := validTopicName(topic); err != nil {
		return TopicRoute{}, err
	}
	code, remark, body, err := a.callNameServers(ctx, codeGetRouteInfo, map[string]string{"topic": topic})
	if err != nil {
		return TopicRoute{}, err
	}
	switch code {
	case codeSuccess:
	case codeTopicNotExist:
		return TopicRoute{}, fmt.Errorf("%w: %s", ErrTopicNotFound, topic)
	default:
		return TopicRoute{}, fmt.Errorf("rocketmq: route of %q: code %d: %s", topic, code, remark)
	}
	route, err := parseRoute(body)
	if err != nil {
		return TopicRoute{}, fmt.Errorf("rocketmq: decode route of %q: %w", topic, err)
	}
	return route, nil
}

// QueueOffsets are one queue's bounds: messages in [Min, Max) are stored.
type QueueOffsets struct {
	Broker  string
	QueueID int
	Min     int64
	Max     int64
	// LastStored is when the newest message was stored (zero when the queue is empty).
	LastStored time.Time
}

// mqTableKey matches fastjson's object keys for MessageQueue ({"brokerName":..,"queueId":..,"topic":..}:).
var mqTableKey = regexp.MustCompile(`\{"brokerName":"([^"]*)","queueId":(\d+),"topic":"([^"]*)"\}:`)

// decodeMQTable reads a fastjson Map<MessageQueue, V> in field of body into values keyed by queue.
func decodeMQTable(body []byte, field string) (map[mqID]json.RawMessage, error) {
	plain := mqTableKey.ReplaceAll(body, []byte(`"$1\u0000$2\u0000$3":`))
	var outer map[string]json.RawMessage
	if err := json.Unmarshal(plain, &outer); err != nil {
		return nil, err
	}
	var table map[string]json.RawMessage
	if raw, ok := outer[field]; ok {
		if err := json.Unmarshal(raw, &table); err != nil {
			return nil, err
		}
	}
	out := make(map[mqID]json.RawMessage, len(table))
	for k, v := range table {
		parts := strings.SplitN(k, "\x00", 3)
		if len(parts) != 3 {
			return nil, fmt.Errorf("unexpected queue key %q", k)
		}
		qid, err := strconv.Atoi(parts[1])
		if err != nil {
			return nil, fmt.Errorf("unexpected queue id in %q", k)
		}
		out[mqID{broker: parts[0], queueID: qid, topic: parts[2]}] = v
	}
	return out, nil
}

type mqID struct {
	broker  string
	queueID int
	topic   string
}

func sortedMQs[V any](m map[mqID]V) []mqID {
	ids := make([]mqID, 0, len(m))
	for id := range m {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool {
		if ids[i].topic != ids[j].topic {
			return ids[i].topic < ids[j].topic
		}
		if ids[i].broker != ids[j].broker {
			return ids[i].broker < ids[j].broker
		}
		return ids[i].queueID < ids[j].queueID
	})
	return ids
}

// QueueOffsets returns every queue's min and max offset (GET_TOPIC_STATS_INFO on each broker).
func (a *Admin) QueueOffsets(ctx context.Context, topic string) ([]QueueOffsets, error) {
	route, err := a.Route(ctx, topic)
	if err != nil {
		return nil, err
	}
	all := map[mqID]json.RawMessage{}
	for _, addr := range route.Brokers {
		code, remark, body, err := a.call(ctx, addr, codeGetTopicStatsInfo, map[string]string{"topic": topic}, nil)
		if err != nil {
			return nil, fmt.Errorf("rocketmq: topic stats of %q from %s: %w", topic, addr, err)
		}
		if code != codeSuccess {
			return nil, fmt.Errorf("rocketmq: topic stats of %q from %s: code %d: %s", topic, addr, code, remark)
		}
		table, err := decodeMQTable(body, "offsetTable")
		if err != nil {
			return nil, fmt.Errorf("rocketmq: decode topic stats of %q: %w", topic, err)
		}
		for k, v := range table {
			all[k] = v
		}
	}
	out := make([]QueueOffsets, 0, len(all))
	for _, id := range sortedMQs(all) {
		var v struct {
			MinOffset           int64 `json:"minOffset"`
			MaxOffset           int64 `json:"maxOffset"`
			LastUpdateTimestamp int64 `json:"lastUpdateTimestamp"`
		}
		if err := json.Unmarshal(all[id], &v); err != nil {
			return nil, fmt.Errorf("rocketmq: decode offsets of %s queue %d: %w", id.broker, id.queueID, err)
		}
		q := QueueOffsets{Broker: id.broker, QueueID: id.queueID, Min: v.MinOffset, Max: v.MaxOffset}
		if v.LastUpdateTimestamp > 0 {
			q.LastStored = time.UnixMilli(v.LastUpdateTimestamp)
		}
		out = append(out, q)
	}
	return out, nil
}

// QueueProgress is a consumer group's position in one queue.
type QueueProgress struct {
	Topic          string
	Broker         string
	QueueID        int
	BrokerOffset   int64 // the queue's max offset
	ConsumerOffset int64 // what the group committed
	Lag            int64
}

// GroupProgress is a consumer group's position over the queues of its topics.
type GroupProgress struct {
	Group  string
	Queues []QueueProgress
	// Lag is the messages stored but not yet committed by the group, over all queues: the backlog.
	Lag int64
}

// GroupProgress reports a group's committed offsets, the brokers' offsets and the lag per queue
// (GET_CONSUME_STATS). With an empty topic it covers every topic the group consumes.
func (a *Admin) GroupProgress(ctx context.Context, group, topic string) (GroupProgress, error) {
	if strings.TrimSpace(group) == "" {
		return GroupProgress{}, errors.New("rocketmq: consumer group is empty")
	}
	brokers, err := a.brokersFor(ctx, topic)
	if err != nil {
		return GroupProgress{}, err
	}
	all := map[mqID]json.RawMessage{}
	for _, addr := range brokers {
		ext := map[string]string{"consumerGroup": group}
		if topic != "" {
			ext["topic"] = topic
		}
		code, remark, body, err := a.call(ctx, addr, codeGetConsumeStats, ext, nil)
		if err != nil {
			return GroupProgress{}, fmt.Errorf("rocketmq: consume stats of %q from %s: %w", group, addr, err)
		}
		if code != codeSuccess {
			return GroupProgress{}, fmt.Errorf("rocketmq: consume stats of %q from %s: code %d: %s", group, addr, code, remark)
		}
		table, err := decodeMQTable(body, "offsetTable")
		if err != nil {
			return GroupProgress{}, fmt.Errorf("rocketmq: decode consume stats of %q: %w", group, err)
		}
		for k, v := range table {
			all[k] = v
		}
	}
	p := GroupProgress{Group: group}
	for _, id := range sortedMQs(all) {
		var v struct {
			BrokerOffset   int64 `json:"brokerOffset"`
			ConsumerOffset int64 `json:"consumerOffset"`
		}
		if err := json.Unmarshal(all[id], &v); err != nil {
			return GroupProgress{}, fmt.Errorf("rocketmq: decode progress of %s queue %d: %w", id.broker, id.queueID, err)
		}
		lag := max(v.BrokerOffset-v.ConsumerOffset, 0)
		p.Queues = append(p.Queues, QueueProgress{Topic: id.topic, Broker: id.broker, QueueID: id.queueID,
			BrokerOffset: v.BrokerOffset, ConsumerOffset: v.ConsumerOffset, Lag: lag})
		p.Lag += lag
	}
	return p, nil
}

// brokersFor returns the brokers hosting topic, or every master when topic is empty.
func (a *Admin) brokersFor(ctx context.Context, topic string) ([]string, error) {
	if topic != "" {
		route, err := a.Route(ctx, topic)
		if err != nil {
			return nil, err
		}
		out := make([]string, 0, len(route.Brokers))
		for _, addr := range route.Brokers {
			out = append(out, addr)
		}
		sort.Strings(out)
		return out, nil
	}
	cluster, err := a.Brokers(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]string, 0, len(cluster))
	for _, b := range cluster {
		out = append(out, b.Addr)
	}
	return out, nil
}

// Client is a consumer connected to a broker.
type Client struct {
	ID       string
	Addr     string
	Language string
	Version  int
}

// GroupClients lists the group's online consumers (GET_CONSUMER_CONNECTION_LIST). A group with
// none online is not an error: the list is empty.
func (a *Admin) GroupClients(ctx context.Context, group string) ([]Client, error) {
	if strings.TrimSpace(group) == "" {
		return nil, errors.New("rocketmq: consumer group is empty")
	}
	brokers, err := a.brokersFor(ctx, "")
	if err != nil {
		return nil, err
	}
	seen := map[string]Client{}
	for _, addr := range brokers {
		code, remark, body, err := a.call(ctx, addr, codeGetConsumerConnList, map[string]string{"consumerGroup": group}, nil)
		if err != nil {
			return nil, fmt.Errorf("rocketmq: consumers of %q from %s: %w", group, addr, err)
		}
		if code == codeConsumerNotOnline {
			continue
		}
		if code != codeSuccess {
			return nil, fmt.Errorf("rocketmq: consumers of %q from %s: code %d: %s", group, addr, code, remark)
		}
		var conns struct {
			ConnectionSet []struct {
				ClientID   string `json:"clientId"`
				ClientAddr string `json:"clientAddr"`
				Language   string `json:"language"`
				Version    int    `json:"version"`
			} `json:"connectionSet"`
		}
		if err := json.Unmarshal(body, &conns); err != nil {
			return nil, fmt.Errorf("rocketmq: decode consumers of %q: %w", group, err)
		}
		for _, c := range conns.ConnectionSet {
			seen[c.ClientID] = Client{ID: c.ClientID, Addr: c.ClientAddr, Language: c.Language, Version: c.Version}
		}
	}
	out := make([]Client, 0, len(seen))
	for _, c := range seen {
		out = append(out, c)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// ResetOffsets moves a group's offsets on a topic to the messages stored at t, as mqadmin
// resetOffsetByTime does: online consumers are told to jump there; with none online the
// committed offsets are rewritten. It returns the new offset of each queue.
func (a *Admin) ResetOffsets(ctx context.Context, group, topic string, t time.Time) ([]QueueProgress, error) {
	if strings.TrimSpace(group) == "" {
		return nil, errors.New("rocketmq: consumer group is empty")
	}
	route, err := a.Route(ctx, topic)
	if err != nil {
		return nil, err
	}
	ts := strconv.FormatInt(t.UnixMilli(), 10)
	var out []QueueProgress
	for name, addr := range route.Brokers {
		code, remark, body, err := a.call(ctx, addr, codeInvokeResetOffset,
			map[string]string{"topic": topic, "group": group, "timestamp": ts, "isForce": "true"}, nil)
		if err != nil {
			return nil, fmt.Errorf("rocketmq: reset offsets of %q on %s: %w", group, addr, err)
		}
		switch code {
		case codeSuccess:
			table, err := decodeMQTable(body, "offsetTable")
			if err != nil {
				return nil, fmt.Errorf("rocketmq: decode reset offsets: %w", err)
			}
			for _, id := range sortedMQs(table) {
				off, err := strconv.ParseInt(string(table[id]), 10, 64)
				if err != nil {
					return nil, fmt.Errorf("rocketmq: decode reset offset of queue %d: %w", id.queueID, err)
				}
				out = append(out, QueueProgress{Topic: topic, Broker: id.broker, QueueID: id.queueID, ConsumerOffset: off})
			}
		case codeConsumerNotOnline:
			queues, err := a.rewriteOffsets(ctx, addr, name, group, topic, route, ts)
			if err != nil {
				return nil, err
			}
			out = append(out, queues...)
		default:
			return nil, fmt.Errorf("rocketmq: reset offsets of %q on %s: code %d: %s", group, addr, code, remark)
		}
	}
	return out, nil
}

// rewriteOffsets commits, for each of a broker's queues, the offset of the message stored at ts.
func (a *Admin) rewriteOffsets(ctx context.Context, addr, broker, group, topic string, route TopicRoute, ts string) ([]QueueProgress, error) {
	var out []QueueProgress
	for _, q := range route.Queues {
		if q.Broker != broker {
			continue
		}
		for id := 0; id < q.ReadQueues; id++ {
			qid := strconv.Itoa(id)
			off, err := a.searchOffset(ctx, addr, topic, qid, ts)
			if err != nil {
				return nil, err
			}
			code, remark, _, err := a.call(ctx, addr, codeUpdateConsumerOffset, map[string]string{"consumerGroup": group,
				"topic": topic, "queueId": qid, "commitOffset": strconv.FormatInt(off, 10)}, nil)
			if err != nil {
				return nil, fmt.Errorf("rocketmq: commit offset of %s queue %d: %w", topic, id, err)
			}
			if code != codeSuccess {
				return nil, fmt.Errorf("rocketmq: commit offset of %s queue %d: code %d: %s", topic, id, code, remark)
			}
			out = append(out, QueueProgress{Topic: topic, Broker: broker, QueueID: id, ConsumerOffset: off})
		}
	}
	return out, nil
}

// searchOffset asks a broker for the offset of the message stored nearest to ts.
func (a *Admin) searchOffset(ctx context.Context, addr, topic, qid, ts string) (int64, error) {
	resp, _, err := a.callFull(ctx, addr, codeSearchOffsetByTime, map[string]string{"topic": topic, "queueId": qid, "timestamp": ts}, nil)
	if err != nil {
		return 0, fmt.Errorf("rocketmq: search offset of %s queue %s: %w", topic, qid, err)
	}
	if resp.Code != codeSuccess {
		return 0, fmt.Errorf("rocketmq: search offset of %s queue %s: code %d: %s", topic, qid, resp.Code, resp.Remark)
	}
	off, err := strconv.ParseInt(resp.ExtFields["offset"], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("rocketmq: search offset of %s queue %s: answer %q is not an offset", topic, qid, resp.ExtFields["offset"])
	}
	return off, nil
}

// MessageByOffsetID looks a message up by the broker's offset message id (store host, port and
// commit-log offset in hex), which SendResult.OffsetMsgID and MessageExt.OffsetMsgId carry.
func (a *Admin) MessageByOffsetID(ctx context.Context, offsetMsgID string) (*primitive.MessageExt, error) {
	raw, err := hex.DecodeString(offsetMsgID)
	if err != nil || len(raw) != 16 {
		return nil, fmt.Errorf("rocketmq: %q is not an offset message id (32 hex characters)", offsetMsgID)
	}
	storeAddr := net.JoinHostPort(net.IP(raw[:4]).String(), strconv.Itoa(int(uint32(raw[4])<<24|uint32(raw[5])<<16|uint32(raw[6])<<8|uint32(raw[7]))))
	offset := strconv.FormatUint(uint64(raw[8])<<56|uint64(raw[9])<<48|uint64(raw[10])<<40|uint64(raw[11])<<32|
		uint64(raw[12])<<24|uint64(raw[13])<<16|uint64(raw[14])<<8|uint64(raw[15]), 10)
	// The id names the store host as the broker saw itself, which behind a port mapping is not
	// reachable: ask it first, then every master.
	candidates := []string{storeAddr}
	if cluster, err := a.Brokers(ctx); err == nil {
		for _, b := range cluster {
			if b.Addr != storeAddr {
				candidates = append(candidates, b.Addr)
			}
		}
	}
	var lastErr error
	for _, addr := range candidates {
		code, remark, body, err := a.call(ctx, addr, codeViewMessageByID, map[string]string{"offset": offset}, nil)
		if err != nil {
			lastErr = err
			continue
		}
		if code != codeSuccess {
			lastErr = fmt.Errorf("code %d: %s", code, remark)
			continue
		}
		if msgs := primitive.DecodeMessage(body); len(msgs) == 1 && msgs[0].OffsetMsgId == strings.ToUpper(offsetMsgID) {
			return msgs[0], nil
		}
		lastErr = errors.New("the broker returned another message")
	}
	return nil, fmt.Errorf("rocketmq: message %s not found: %w", offsetMsgID, lastErr)
}

// MessagesByKey finds up to max messages of a topic whose keys include key (QUERY_MESSAGE). The
// broker indexes keys asynchronously: a message sent a moment ago may not be found yet.
func (a *Admin) MessagesByKey(ctx context.Context, topic, key string, max int) ([]*primitive.MessageExt, error) {
	return a.queryMessages(ctx, topic, key, max, false)
}

// MessageByUniqueID finds a message by the producer's unique id (Watermill's message, through
// the client, carries it as MsgId; UNIQ_KEY).
func (a *Admin) MessageByUniqueID(ctx context.Context, topic, id string) (*primitive.MessageExt, error) {
	msgs, err := a.queryMessages(ctx, topic, id, 32, true)
	if err != nil {
		return nil, err
	}
	for _, m := range msgs {
		if m.MsgId == id {
			return m, nil
		}
	}
	return nil, fmt.Errorf("rocketmq: no message with unique id %s in %s", id, topic)
}

func (a *Admin) queryMessages(ctx context.Context, topic, key string, max int, unique bool) ([]*primitive.MessageExt, error) {
	if strings.TrimSpace(key) == "" {
		return nil, errors.New("rocketmq: message key is empty")
	}
	if max <= 0 {
		max = 32
	}
	brokers, err := a.brokersFor(ctx, topic)
	if err != nil {
		return nil, err
	}
	var out []*primitive.MessageExt
	for _, addr := range brokers {
		ext := map[string]string{"topic": topic, "key": key, "maxNum": strconv.Itoa(max), "beginTimestamp": "0",
			"endTimestamp": strconv.FormatInt(time.Now().Add(time.Hour).UnixMilli(), 10)}
		if unique {
			ext["_UNIQUE_KEY_QUERY"] = "true"
		}
		code, remark, body, err := a.call(ctx, addr, codeQueryMessage, ext, nil)
		if err != nil {
			return nil, fmt.Errorf("rocketmq: query %q in %s on %s: %w", key, topic, addr, err)
		}
		switch code {
		case codeSuccess:
			out = append(out, primitive.DecodeMessage(body)...)
		case codeQueryNotFound:
		default:
			return nil, fmt.Errorf("rocketmq: query %q in %s on %s: code %d: %s", key, topic, addr, code, remark)
		}
	}
	if len(out) > max {
		out = out[:max]
	}
	return out, nil
}
