package rocketmq

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"regexp"
	"sync/atomic"
	"time"

	"github.com/apache/rocketmq-client-go/v2/primitive"
)

// The admin API of rocketmq-client-go v2.1.2 can create a topic on a given broker but cannot tell
// whether a topic has a route or where the brokers are, and the consumer cannot release a queue
// lock it no longer needs. Those requests are sent here with a minimal remoting client.

const (
	codeGetRouteInfo  = 105
	codeTopicNotExist = 17
	defaultTopic      = "TBW102"
	permRead          = 4
	permReadWrite     = 6
)

var routeOpaque atomic.Int32

type remotingHeader struct {
	Code      int               `json:"code"`
	Language  string            `json:"language"`
	Version   int               `json:"version"`
	Opaque    int32             `json:"opaque"`
	Flag      int               `json:"flag"`
	Remark    string            `json:"remark"`
	ExtFields map[string]string `json:"extFields"`
}

// invoke sends one remoting request to addr and returns the response code, remark and body.
func invoke(ctx context.Context, addr string, code int, ext map[string]string, body []byte) (int, string, []byte, error) {
	resp, respBody, err := invokeFull(ctx, addr, code, ext, body)
	return resp.Code, resp.Remark, respBody, err
}

// invokeFull is invoke returning the whole response header, whose extFields carry the results
// of some requests (offsets).
func invokeFull(ctx context.Context, addr string, code int, ext map[string]string, body []byte) (remotingHeader, []byte, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return remotingHeader{}, nil, err
	}
	defer conn.Close()
	if deadline, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(deadline)
	} else {
		_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	}

	header, err := json.Marshal(remotingHeader{
		Code: code, Language: "GO", Version: 317, Opaque: routeOpaque.Add(1), ExtFields: ext,
	})
	if err != nil {
		return remotingHeader{}, nil, err
	}
	frame := make([]byte, 8, 8+len(header)+len(body))
	binary.BigEndian.PutUint32(frame[0:4], uint32(4+len(header)+len(body)))
	binary.BigEndian.PutUint32(frame[4:8], uint32(len(header))) // serialize type 0 = JSON
	frame = append(frame, header...)
	frame = append(frame, body...)
	if _, err := conn.Write(frame); err != nil {
		return remotingHeader{}, nil, err
	}

	r := bufio.NewReader(conn)
	var lengths [8]byte
	if _, err := io.ReadFull(r, lengths[:]); err != nil {
		return remotingHeader{}, nil, err
	}
	total := binary.BigEndian.Uint32(lengths[0:4])
	headerLen := binary.BigEndian.Uint32(lengths[4:8]) & 0xFFFFFF
	if total < 4+headerLen || total > 16<<20 {
		return remotingHeader{}, nil, fmt.Errorf("bad response frame from %s", addr)
	}
	rest := make([]byte, total-4)
	if _, err := io.ReadFull(r, rest); err != nil {
		return remotingHeader{}, nil, err
	}
	var resp remotingHeader
	if err := json.Unmarshal(rest[:headerLen], &resp); err != nil {
		return remotingHeader{}, nil, fmt.Errorf("decode response header from %s: %w", addr, err)
	}
	return resp, rest[headerLen:], nil
}

// routeInfo is the part of a topic route this package needs.
type routeInfo struct {
	// brokers maps broker names to master addresses.
	brokers   map[string]string
	hasQueues bool
	// readable: some queue grants read permission. Brokers create %DLQ% topics write-only.
	readable  bool
	queueNums int
}

func (r routeInfo) masterAddrs() []string {
	out := make([]string, 0, len(r.brokers))
	for _, a := range r.brokers {
		out = append(out, a)
	}
	return out
}

// unquotedKey matches fastjson's integer map keys ({0:"host:port"}), which encoding/json rejects.
var unquotedKey = regexp.MustCompile(`([{,])\s*(\d+)\s*:`)

// topicRoute asks a name server for the route of topic. A topic the name server does not know is
// not an error: the route is just empty.
func topicRoute(ctx context.Context, nameServer, topic string) (routeInfo, error) {
	code, remark, body, err := invoke(ctx, nameServer, codeGetRouteInfo, map[string]string{"topic": topic}, nil)
	if err != nil {
		return routeInfo{}, err
	}
	switch code {
	case 0:
	case codeTopicNotExist:
		return routeInfo{}, nil
	default:
		return routeInfo{}, fmt.Errorf("route query for %q answered code %d: %s", topic, code, remark)
	}
	route, err := parseRoute(body)
	if err != nil {
		return routeInfo{}, fmt.Errorf("decode route of %q: %w", topic, err)
	}
	return route.info(), nil
}

// parseRoute decodes a GET_ROUTEINFO_BY_TOPIC body.
func parseRoute(body []byte) (TopicRoute, error) {
	var data struct {
		BrokerDatas []struct {
			BrokerName  string            `json:"brokerName"`
			BrokerAddrs map[string]string `json:"brokerAddrs"`
		} `json:"brokerDatas"`
		QueueDatas []struct {
			BrokerName     string `json:"brokerName"`
			ReadQueueNums  int    `json:"readQueueNums"`
			WriteQueueNums int    `json:"writeQueueNums"`
			Perm           int    `json:"perm"`
		} `json:"queueDatas"`
	}
	if err := json.Unmarshal(unquotedKey.ReplaceAll(body, []byte(`$1"$2":`)), &data); err != nil {
		return TopicRoute{}, err
	}
	route := TopicRoute{Brokers: map[string]string{}}
	for _, b := range data.BrokerDatas {
		if addr := b.BrokerAddrs["0"]; addr != "" {
			route.Brokers[b.BrokerName] = addr
		}
	}
	for _, q := range data.QueueDatas {
		route.Queues = append(route.Queues, QueueData{Broker: q.BrokerName, ReadQueues: q.ReadQueueNums,
			WriteQueues: q.WriteQueueNums, Perm: q.Perm})
	}
	return route, nil
}

func (r TopicRoute) info() routeInfo {
	info := routeInfo{brokers: r.Brokers, hasQueues: len(r.Queues) > 0}
	for _, q := range r.Queues {
		if q.Perm&permRead != 0 {
			info.readable = true
		}
		info.queueNums = max(info.queueNums, q.ReadQueues)
	}
	return info
}

// firstRoute tries every name server in turn.
func firstRoute(ctx context.Context, nameServers []string, topic string) (info routeInfo, err error) {
	for _, ns := range nameServers {
		info, err = topicRoute(ctx, ns, topic)
		if err == nil {
			return info, nil
		}
	}
	return routeInfo{}, err
}

// topicCreator creates the topics a Subscriber needs through an Admin, created on first use.
type topicCreator struct {
	nameServers []string
	namespace   string
	credentials primitive.Credentials
	brokers     []string
	queueNums   int

	admin *Admin
}

func (tc *topicCreator) fullName(topic string) string {
	if tc.namespace == "" {
		return topic
	}
	return tc.namespace + "%" + topic
}

// ensure makes sure topic has a route, creating it on the brokers if needed. The caller
// serialises calls.
func (tc *topicCreator) ensure(ctx context.Context, topic string) error {
	return tc.ensureFull(ctx, tc.fullName(topic), tc.queueNums)
}

// ensureFull is ensure for a name that already carries its namespace (retry topics).
func (tc *topicCreator) ensureFull(ctx context.Context, full string, queueNums int) error {
	route, err := firstRoute(ctx, tc.nameServers, full)
	if err != nil {
		return fmt.Errorf("rocketmq: look up route of topic %q: %w", full, err)
	}
	if route.hasQueues && route.readable {
		return nil
	}
	if route.hasQueues {
		// A write-only topic (a %DLQ% topic as the broker creates it): make it readable,
		// keeping its queues, so that it can be subscribed to.
		queueNums = max(route.queueNums, 1)
	}
	brokers := tc.brokers
	if len(brokers) == 0 {
		def, err := firstRoute(ctx, tc.nameServers, defaultTopic)
		brokers = def.masterAddrs()
		if err != nil {
			return fmt.Errorf("rocketmq: find brokers through the route of %s: %w", defaultTopic, err)
		}
		if len(brokers) == 0 {
			return fmt.Errorf("rocketmq: cannot create topic %q: no broker found in the route of %s; set SubscriberConfig.BrokerAddrs", full, defaultTopic)
		}
	}
	if tc.admin == nil {
		a, err := NewAdmin(AdminConfig{NameServers: tc.nameServers, Credentials: tc.credentials})
		if err != nil {
			return err
		}
		tc.admin = a
	}
	return tc.admin.CreateTopic(ctx, full, WithQueues(queueNums), WithPermission(permReadWrite), OnBrokers(brokers...))
}

func (tc *topicCreator) close() error {
	if tc.admin == nil {
		return nil
	}
	err := tc.admin.Close()
	tc.admin = nil
	return err
}
