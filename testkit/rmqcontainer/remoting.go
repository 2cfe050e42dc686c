package rmqcontainer

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"time"
)

// Request codes of the RocketMQ remoting protocol this package sends.
const (
	codeUpdateBrokerConfig   = 25
	codeGetBrokerClusterInfo = 106
)

// maxResponse bounds a response frame: cluster info and routes are a few kilobytes, so anything
// near this size means the peer is not a RocketMQ server.
const maxResponse = 8 << 20

// remotingHeader is the JSON header of a remoting frame. extFields values are strings on the wire:
// the brokers' decoders expect them that way.
type remotingHeader struct {
	Code      int               `json:"code"`
	Language  string            `json:"language"`
	Version   int               `json:"version"`
	Opaque    int32             `json:"opaque"`
	Flag      int               `json:"flag"`
	Remark    string            `json:"remark,omitempty"`
	ExtFields map[string]string `json:"extFields"`
}

// remotingResponse is what a broker or name server answered.
type remotingResponse struct {
	Code   int
	Remark string
	Body   []byte
}

// invoke sends one request on a fresh connection and waits for its response. A fresh connection
// per call keeps this free of background readers: it is used a handful of times per container.
func invoke(ctx context.Context, addr string, code int, ext map[string]string, body []byte) (remotingResponse, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return remotingResponse{}, err
	}
	defer conn.Close()
	deadline := time.Now().Add(5 * time.Second)
	if dl, ok := ctx.Deadline(); ok && dl.Before(deadline) {
		deadline = dl
	}
	if err := conn.SetDeadline(deadline); err != nil {
		return remotingResponse{}, err
	}
	// Abort the blocking read when ctx ends before the deadline.
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Now()) })
	defer stop()

	if ext == nil {
		ext = map[string]string{}
	}
	const opaque = 1
	frame, err := encodeFrame(remotingHeader{Code: code, Language: "GO", Version: 317, Opaque: opaque, ExtFields: ext}, body)
	if err != nil {
		return remotingResponse{}, err
	}
	if _, err := conn.Write(frame); err != nil {
		return remotingResponse{}, fmt.Errorf("send request %d to %s: %w", code, addr, err)
	}
	for {
		h, body, err := readFrame(conn)
		if err != nil {
			if ctx.Err() != nil {
				return remotingResponse{}, ctx.Err()
			}
			return remotingResponse{}, fmt.Errorf("read response %d from %s: %w", code, addr, err)
		}
		// Servers may push their own requests (flag bit 0 clear) on any connection; skip them.
		if h.Flag&1 == 0 || h.Opaque != opaque {
			continue
		}
		return remotingResponse{Code: h.Code, Remark: h.Remark, Body: body}, nil
	}
}

// encodeFrame lays out length, serialize type with header length, JSON header and body.
func encodeFrame(h remotingHeader, body []byte) ([]byte, error) {
	header, err := json.Marshal(h)
	if err != nil {
		return nil, err
	}
	frame := make([]byte, 8, 8+len(header)+len(body))
	binary.BigEndian.PutUint32(frame[0:4], uint32(4+len(header)+len(body)))
	// High byte 0 = JSON header; low 24 bits = header length.
	binary.BigEndian.PutUint32(frame[4:8], uint32(len(header))&0xFFFFFF)
	frame = append(frame, header...)
	return append(frame, body...), nil
}

// readFrame reads one frame with a JSON header.
func readFrame(r io.Reader) (remotingHeader, []byte, error) {
	var prefix [8]byte
	if _, err := io.ReadFull(r, prefix[:]); err != nil {
		return remotingHeader{}, nil, err
	}
	total := binary.BigEndian.Uint32(prefix[0:4])
	mark := binary.BigEndian.Uint32(prefix[4:8])
	headerLen := mark & 0xFFFFFF
	if mark>>24 != 0 {
		return remotingHeader{}, nil, fmt.Errorf("unsupported header encoding %d (want JSON)", mark>>24)
	}
	if total < 4 || total > maxResponse || headerLen > total-4 {
		return remotingHeader{}, nil, fmt.Errorf("malformed frame: length %d, header length %d", total, headerLen)
	}
	rest := make([]byte, total-4)
	if _, err := io.ReadFull(r, rest); err != nil {
		return remotingHeader{}, nil, err
	}
	var h remotingHeader
	if err := json.Unmarshal(rest[:headerLen], &h); err != nil {
		return remotingHeader{}, nil, fmt.Errorf("malformed frame header: %w", err)
	}
	return h, rest[headerLen:], nil
}

// updateBrokerConfig sends UPDATE_BROKER_CONFIG with the given properties to a broker.
func updateBrokerConfig(ctx context.Context, brokerAddr string, props map[string]string) error {
	resp, err := invoke(ctx, brokerAddr, codeUpdateBrokerConfig, nil, []byte(propertiesText(props)))
	if err != nil {
		return err
	}
	if resp.Code != 0 {
		return fmt.Errorf("broker %s refused UPDATE_BROKER_CONFIG: code %d %s", brokerAddr, resp.Code, resp.Remark)
	}
	return nil
}

// clusterInfo asks a name server for GET_BROKER_CLUSTER_INFO. The body is returned raw: the Java
// name server writes maps with numeric keys unquoted ({0:"addr"}), which is not JSON.
func clusterInfo(ctx context.Context, nameServer string) (string, error) {
	resp, err := invoke(ctx, nameServer, codeGetBrokerClusterInfo, nil, nil)
	if err != nil {
		return "", err
	}
	if resp.Code != 0 {
		return "", fmt.Errorf("name server %s: GET_BROKER_CLUSTER_INFO answered code %d %s", nameServer, resp.Code, resp.Remark)
	}
	return string(resp.Body), nil
}

// errNoBroker means the name server answers but no broker has registered yet.
var errNoBroker = errors.New("no broker registered with the name server yet")

// registeredBroker reports whether a cluster info body lists at least one broker address, and
// whether one of them is want (when want is not empty). The body is searched as text because the
// Java name server's output is not strict JSON.
func registeredBroker(body, want string) (registered, found bool) {
	rest := body
	for {
		i := strings.Index(rest, `"brokerAddrs":{`)
		if i < 0 {
			break
		}
		rest = rest[i+len(`"brokerAddrs":{`):]
		if !strings.HasPrefix(strings.TrimSpace(rest), "}") {
			registered = true
			break
		}
	}
	found = want != "" && strings.Contains(body, `"`+want+`"`)
	return registered, found
}
