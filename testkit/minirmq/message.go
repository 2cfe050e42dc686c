package minirmq

import (
	"bytes"
	"compress/zlib"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"net"
	"strings"
	"time"
)

// Message property names the broker reads or writes (org.apache.rocketmq.common.message.MessageConst).
const (
	propTags          = "TAGS"
	propKeys          = "KEYS"
	propUniqKey       = "UNIQ_KEY"
	propDelay         = "DELAY"
	propTranMsg       = "TRAN_MSG"
	propProducerGroup = "PGROUP"
	propRealTopic     = "REAL_TOPIC"
	propRealQueueID   = "REAL_QID"
	propRetryTopic    = "RETRY_TOPIC"
	propOriginMsgID   = "ORIGIN_MESSAGE_ID"
	propTimerDeliver  = "TIMER_DELIVER_MS"
	propTimerDelaySec = "TIMER_DELAY_SEC"
	propTimerDelayMs  = "TIMER_DELAY_MS"
	propCluster       = "CLUSTER"

	nameValueSep = '\x01'
	propertySep  = '\x02'
)

// sysFlag bits (MessageSysFlag).
const (
	sysFlagCompressed  = 0x1
	sysFlagTxPrepared  = 0x4
	sysFlagTxCommit    = 0x8
	sysFlagTxMask      = 0xC
	sysFlagBornHostV6  = 0x10
	sysFlagStoreHostV6 = 0x20
)

const (
	messageMagic     = 0xDAA320A7
	maxPropertiesLen = 32767
	maxTopicLength   = 127
)

// Message is a stored message as the broker holds it, decoded for inspection.
type Message struct {
	Topic           string
	QueueID         int
	QueueOffset     int64
	CommitLogOffset int64
	// MsgID is the producer's unique id (UNIQ_KEY), or the offset id when the producer set none.
	MsgID string
	// OffsetMsgID is the broker's id: store host, port and commit-log offset in hex.
	OffsetMsgID    string
	Tags           string
	Keys           string
	Body           []byte
	Properties     map[string]string
	Flag           int32
	SysFlag        int32
	ReconsumeTimes int32
	BornTimestamp  time.Time
	StoreTimestamp time.Time
	BornHost       string
}

// msgFields is everything that goes into the store encoding of one message.
type msgFields struct {
	topic            string
	queueID          int32
	flag             int32
	queueOffset      int64
	phys             int64
	sysFlag          int32
	bornTs           int64
	bornHost         *net.TCPAddr
	storeTs          int64
	storeHost        *net.TCPAddr
	reconsumeTimes   int32
	preparedTxOffset int64
	body             []byte
	properties       string
}

func ipv4(addr *net.TCPAddr) ([]byte, int32) {
	if addr == nil {
		return []byte{127, 0, 0, 1}, 0
	}
	ip := addr.IP.To4()
	if ip == nil {
		ip = net.IPv4zero.To4()
	}
	return ip, int32(addr.Port)
}

// encodeStored renders m in the commit-log encoding that PULL_MESSAGE and
// CHECK_TRANSACTION_STATE bodies carry (MessageDecoder / the client's DecodeMessage).
func encodeStored(m *msgFields) []byte {
	// Hosts are always encoded as IPv4: clear the v6 bits so decoders read 4-byte addresses.
	sysFlag := m.sysFlag &^ (sysFlagBornHostV6 | sysFlagStoreHostV6)
	size := 4 + 4 + 4 + 4 + 4 + 8 + 8 + 4 + 8 + 8 + 8 + 8 + 4 + 8 + 4 + len(m.body) + 1 + len(m.topic) + 2 + len(m.properties)
	b := make([]byte, 0, size)
	be := binary.BigEndian
	b = be.AppendUint32(b, uint32(size))
	b = be.AppendUint32(b, messageMagic)
	b = be.AppendUint32(b, crc32.ChecksumIEEE(m.body)&0x7FFFFFFF)
	b = be.AppendUint32(b, uint32(m.queueID))
	b = be.AppendUint32(b, uint32(m.flag))
	b = be.AppendUint64(b, uint64(m.queueOffset))
	b = be.AppendUint64(b, uint64(m.phys))
	b = be.AppendUint32(b, uint32(sysFlag))
	b = be.AppendUint64(b, uint64(m.bornTs))
	ip, port := ipv4(m.bornHost)
	b = append(b, ip...)
	b = be.AppendUint32(b, uint32(port))
	b = be.AppendUint64(b, uint64(m.storeTs))
	ip, port = ipv4(m.storeHost)
	b = append(b, ip...)
	b = be.AppendUint32(b, uint32(port))
	b = be.AppendUint32(b, uint32(m.reconsumeTimes))
	b = be.AppendUint64(b, uint64(m.preparedTxOffset))
	b = be.AppendUint32(b, uint32(len(m.body)))
	b = append(b, m.body...)
	b = append(b, byte(len(m.topic)))
	b = append(b, m.topic...)
	b = be.AppendUint16(b, uint16(len(m.properties)))
	return append(b, m.properties...)
}

// decodeStored parses one store-encoded message. It is the inverse of encodeStored and is
// fuzzed: malformed input returns an error, never panics.
func decodeStored(b []byte) (*msgFields, error) {
	const fixed = 4 + 4 + 4 + 4 + 4 + 8 + 8 + 4 + 8 + 8 + 8 + 8 + 4 + 8 + 4
	if len(b) < fixed {
		return nil, fmt.Errorf("stored message: %d bytes, want at least %d", len(b), fixed)
	}
	be := binary.BigEndian
	m := &msgFields{}
	if be.Uint32(b[4:8]) != messageMagic {
		return nil, errors.New("stored message: bad magic code")
	}
	m.queueID = int32(be.Uint32(b[12:16]))
	m.flag = int32(be.Uint32(b[16:20]))
	m.queueOffset = int64(be.Uint64(b[20:28]))
	m.phys = int64(be.Uint64(b[28:36]))
	m.sysFlag = int32(be.Uint32(b[36:40]))
	m.bornTs = int64(be.Uint64(b[40:48]))
	m.bornHost = &net.TCPAddr{IP: net.IP(append([]byte(nil), b[48:52]...)), Port: int(be.Uint32(b[52:56]))}
	m.storeTs = int64(be.Uint64(b[56:64]))
	m.storeHost = &net.TCPAddr{IP: net.IP(append([]byte(nil), b[64:68]...)), Port: int(be.Uint32(b[68:72]))}
	m.reconsumeTimes = int32(be.Uint32(b[72:76]))
	m.preparedTxOffset = int64(be.Uint64(b[76:84]))
	bodyLen := int(be.Uint32(b[84:88]))
	rest := b[88:]
	if bodyLen < 0 || bodyLen > len(rest) {
		return nil, fmt.Errorf("stored message: body length %d exceeds %d remaining bytes", bodyLen, len(rest))
	}
	m.body, rest = rest[:bodyLen], rest[bodyLen:]
	if len(rest) < 1 || int(rest[0]) > len(rest)-1 {
		return nil, errors.New("stored message: truncated topic")
	}
	m.topic, rest = string(rest[1:1+int(rest[0])]), rest[1+int(rest[0]):]
	if len(rest) < 2 {
		return nil, errors.New("stored message: truncated properties length")
	}
	pl := int(be.Uint16(rest[:2]))
	if pl > len(rest)-2 {
		return nil, fmt.Errorf("stored message: properties length %d exceeds %d remaining bytes", pl, len(rest)-2)
	}
	m.properties = string(rest[2 : 2+pl])
	return m, nil
}

// batchEntry is one message inside a SEND_BATCH_MESSAGE body.
type batchEntry struct {
	flag       int32
	body       []byte
	properties string
}

// decodeBatch splits a batch body: per message total size 4, magic 4, body CRC 4, flag 4,
// body (int32 length), properties (int16 length).
func decodeBatch(b []byte) ([]batchEntry, error) {
	var out []batchEntry
	be := binary.BigEndian
	for len(b) > 0 {
		if len(b) < 20 {
			return nil, fmt.Errorf("batch message %d: %d bytes left, header needs 20", len(out), len(b))
		}
		total := int(be.Uint32(b[0:4]))
		if total < 22 || total > len(b) {
			return nil, fmt.Errorf("batch message %d: total size %d outside [22, %d]", len(out), total, len(b))
		}
		e := batchEntry{flag: int32(be.Uint32(b[12:16]))}
		bodyLen := int(be.Uint32(b[16:20]))
		if bodyLen < 0 || 20+bodyLen+2 > total {
			return nil, fmt.Errorf("batch message %d: body length %d exceeds its size %d", len(out), bodyLen, total)
		}
		e.body = b[20 : 20+bodyLen]
		pl := int(be.Uint16(b[20+bodyLen : 22+bodyLen]))
		if 22+bodyLen+pl > total {
			return nil, fmt.Errorf("batch message %d: properties length %d exceeds its size %d", len(out), pl, total)
		}
		e.properties = string(b[22+bodyLen : 22+bodyLen+pl])
		out = append(out, e)
		b = b[total:]
	}
	return out, nil
}

// parseProperties splits RocketMQ's k\x01v\x02 property encoding.
func parseProperties(s string) map[string]string {
	props := make(map[string]string)
	for len(s) > 0 {
		item := s
		if i := strings.IndexByte(s, propertySep); i >= 0 {
			item, s = s[:i], s[i+1:]
		} else {
			s = ""
		}
		if k, v, ok := strings.Cut(item, string(rune(nameValueSep))); ok {
			props[k] = v
		}
	}
	return props
}

// propertyOf finds one property without building the whole map (hot path of send).
func propertyOf(s, key string) string {
	for len(s) > 0 {
		item := s
		if i := strings.IndexByte(s, propertySep); i >= 0 {
			item, s = s[:i], s[i+1:]
		} else {
			s = ""
		}
		if k, v, ok := strings.Cut(item, string(rune(nameValueSep))); ok && k == key {
			return v
		}
	}
	return ""
}

// formatProperties renders properties in a stable order so stored bytes are deterministic.
func formatProperties(props map[string]string, order []string) string {
	var b strings.Builder
	seen := make(map[string]bool, len(order))
	write := func(k string) {
		v, ok := props[k]
		if !ok || seen[k] {
			return
		}
		seen[k] = true
		b.WriteString(k)
		b.WriteByte(nameValueSep)
		b.WriteString(v)
		b.WriteByte(propertySep)
	}
	for _, k := range order {
		write(k)
	}
	for _, k := range sortedKeys(props) {
		write(k)
	}
	return b.String()
}

// offsetMsgID is the broker's message id: store IPv4, port and commit-log offset, 32 hex chars.
func offsetMsgID(storeHost *net.TCPAddr, phys int64) string {
	ip, port := ipv4(storeHost)
	var raw [16]byte
	copy(raw[:4], ip)
	binary.BigEndian.PutUint32(raw[4:8], uint32(port))
	binary.BigEndian.PutUint64(raw[8:], uint64(phys))
	return strings.ToUpper(hex.EncodeToString(raw[:]))
}

// parseOffsetMsgID returns the commit-log offset inside an offset message id.
func parseOffsetMsgID(id string) (int64, error) {
	raw, err := hex.DecodeString(id)
	if err != nil || len(raw) != 16 {
		return 0, fmt.Errorf("%q is not an offset message id (32 hex characters)", id)
	}
	return int64(binary.BigEndian.Uint64(raw[8:])), nil
}

func uncompress(b []byte) []byte {
	r, err := zlib.NewReader(bytes.NewReader(b))
	if err != nil {
		return b
	}
	defer r.Close()
	out, err := io.ReadAll(r)
	if err != nil {
		return b
	}
	return out
}

// toMessage decodes stored bytes for the inspection API.
func toMessage(enc []byte) Message {
	m, err := decodeStored(enc)
	if err != nil {
		return Message{}
	}
	props := parseProperties(m.properties)
	body := append([]byte(nil), m.body...)
	if m.sysFlag&sysFlagCompressed != 0 {
		body = uncompress(body)
	}
	off := offsetMsgID(m.storeHost, m.phys)
	id := props[propUniqKey]
	if id == "" {
		id = off
	}
	return Message{
		Topic: m.topic, QueueID: int(m.queueID), QueueOffset: m.queueOffset, CommitLogOffset: m.phys,
		MsgID: id, OffsetMsgID: off, Tags: props[propTags], Keys: props[propKeys], Body: body,
		Properties: props, Flag: m.flag, SysFlag: m.sysFlag, ReconsumeTimes: m.reconsumeTimes,
		BornTimestamp: time.UnixMilli(m.bornTs), StoreTimestamp: time.UnixMilli(m.storeTs),
		BornHost: m.bornHost.String(),
	}
}
