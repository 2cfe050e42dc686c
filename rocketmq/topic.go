package rocketmq

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"regexp"
	"sync/atomic"
	"time"

	"github.com/apache/rocketmq-client-go/v2/admin"
	"github.com/apache/rocketmq-client-go/v2/primitive"
)

// The admin API of rocketmq-client-go v2.1.2 can create a topic on a given broker but cannot tell
// whether a topic has a route or where the brokers are. Those two questions are answered here
// with a single GET_ROUTEINFO_BY_TOPIC request to a name server.

const (
	codeGetRouteInfo  = 105
	codeTopicNotExist = 17
	defaultTopic      = "TBW102"
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

// topicRoute asks a name server for the route of topic. It returns the broker master addresses
// and whether the topic has any queues; a topic the name server does not know is not an error.
func topicRoute(ctx context.Context, nameServer, topic string) (brokers []string, exists bool, err error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", nameServer)
	if err != nil {
		return nil, false, err
	}
	defer conn.Close()
	if deadline, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(deadline)
	} else {
		_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	}

	header, err := json.Marshal(remotingHeader{
		Code: codeGetRouteInfo, Language: "GO", Version: 317, Opaque: routeOpaque.Add(1),
		ExtFields: map[string]string{"topic": topic},
	})
	if err != nil {
		return nil, false, err
	}
	frame := make([]byte, 8, 8+len(header))
	binary.BigEndian.PutUint32(frame[0:4], uint32(4+len(header)))
	binary.BigEndian.PutUint32(frame[4:8], uint32(len(header))) // serialize type 0 = JSON
	frame = append(frame, header...)
	if _, err := conn.Write(frame); err != nil {
		return nil, false, err
	}

	r := bufio.NewReader(conn)
	var lengths [8]byte
	if _, err := io.ReadFull(r, lengths[:]); err != nil {
		return nil, false, err
	}
	total := binary.BigEndian.Uint32(lengths[0:4])
	headerLen := binary.BigEndian.Uint32(lengths[4:8]) & 0xFFFFFF
	if total < 4+headerLen || total > 16<<20 {
		return nil, false, fmt.Errorf("bad route response frame from %s", nameServer)
	}
	rest := make([]byte, total-4)
	if _, err := io.ReadFull(r, rest); err != nil {
		return nil, false, err
	}
	var resp remotingHeader
	if err := json.Unmarshal(rest[:headerLen], &resp); err != nil {
		return nil, false, fmt.Errorf("decode route response header from %s: %w", nameServer, err)
	}
	switch resp.Code {
	case 0:
	case codeTopicNotExist:
		return nil, false, nil
	default:
		return nil, false, fmt.Errorf("route query for %q answered code %d: %s", topic, resp.Code, resp.Remark)
	}
	body := rest[headerLen:]
	return brokerMasters(body), queueDataPattern.Match(body), nil
}

var (
	// The route body is fastjson output whose brokerAddrs map may have unquoted integer keys
	// ({0:"host:port"}), which encoding/json rejects; the parts needed are simple to find.
	brokerAddrsPattern = regexp.MustCompile(`"brokerAddrs":\{([^}]*)\}`)
	masterAddrPattern  = regexp.MustCompile(`(?:^|,)\s*"?0"?\s*:\s*"([^"]+)"`)
	queueDataPattern   = regexp.MustCompile(`"queueDatas":\[\s*\{`)
)

func brokerMasters(body []byte) []string {
	var out []string
	for _, m := range brokerAddrsPattern.FindAllSubmatch(body, -1) {
		if a := masterAddrPattern.FindSubmatch(m[1]); a != nil {
			out = append(out, string(a[1]))
		}
	}
	return out
}

// firstRoute tries every name server in turn.
func firstRoute(ctx context.Context, nameServers []string, topic string) (brokers []string, exists bool, err error) {
	for _, ns := range nameServers {
		brokers, exists, err = topicRoute(ctx, ns, topic)
		if err == nil {
			return brokers, exists, nil
		}
	}
	return nil, false, err
}

// topicCreator creates topics through the client's admin API. One admin client per Subscriber:
// the admin client is keyed by its start time and not safe to open and close concurrently.
type topicCreator struct {
	nameServers []string
	namespace   string
	credentials primitive.Credentials
	brokers     []string
	queueNums   int

	admin admin.Admin
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
	full := tc.fullName(topic)
	_, exists, err := firstRoute(ctx, tc.nameServers, full)
	if err != nil {
		return fmt.Errorf("rocketmq: look up route of topic %q: %w", full, err)
	}
	if exists {
		return nil
	}
	brokers := tc.brokers
	if len(brokers) == 0 {
		brokers, _, err = firstRoute(ctx, tc.nameServers, defaultTopic)
		if err != nil {
			return fmt.Errorf("rocketmq: find brokers through the route of %s: %w", defaultTopic, err)
		}
		if len(brokers) == 0 {
			return fmt.Errorf("rocketmq: cannot create topic %q: no broker found in the route of %s; set SubscriberConfig.BrokerAddrs", full, defaultTopic)
		}
	}
	if tc.admin == nil {
		opts := []admin.AdminOption{admin.WithResolver(primitive.NewPassthroughResolver(tc.nameServers))}
		if !tc.credentials.IsEmpty() {
			opts = append(opts, admin.WithCredentials(tc.credentials))
		}
		a, err := admin.NewAdmin(opts...)
		if err != nil {
			return fmt.Errorf("rocketmq: create admin client: %w", err)
		}
		tc.admin = a
	}
	for _, b := range brokers {
		err := tc.admin.CreateTopic(ctx,
			admin.WithTopicCreate(full),
			admin.WithBrokerAddrCreate(b),
			admin.WithReadQueueNums(tc.queueNums),
			admin.WithWriteQueueNums(tc.queueNums),
		)
		if err != nil {
			return fmt.Errorf("rocketmq: create topic %q on broker %s: %w", full, b, err)
		}
	}
	// The admin API ignores the broker's answer; the topic is only usable once the broker has
	// registered it with the name server, so wait for the route.
	for {
		_, exists, err := firstRoute(ctx, tc.nameServers, full)
		if err == nil && exists {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("rocketmq: topic %q has no route after creating it on %v (refused by the broker?): %w", full, brokers, errors.Join(ctx.Err(), err))
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (tc *topicCreator) close() error {
	if tc.admin == nil {
		return nil
	}
	err := tc.admin.Close()
	tc.admin = nil
	return err
}
