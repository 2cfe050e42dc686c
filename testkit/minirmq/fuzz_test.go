package minirmq

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"net"
	"testing"
)

func FuzzDecodeFrame(f *testing.F) {
	good, _ := encodeFrame(&command{Code: 10, Language: "GO", Version: 317, Opaque: 1,
		ExtFields: map[string]string{"topic": "T", "properties": "UNIQ_KEY\x01a\x02"}, Body: []byte("hello")})
	bin, _ := encodeFrame(&command{Code: 34, Language: "JAVA", Opaque: 2, ExtFields: map[string]string{"a": "b"},
		Body: []byte("{}"), serializeType: serializeRocketMQ})
	f.Add(good)
	f.Add(bin)
	f.Add([]byte{0, 0, 0, 4, 0, 0, 0, 0})
	f.Add([]byte{0, 0, 0, 8, 1, 0, 0, 4, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		cmd, err := readFrame(bufio.NewReader(bytes.NewReader(data)))
		if err != nil {
			return
		}
		// Whatever decodes must encode and decode back to the same command.
		again, err := encodeFrame(cmd)
		if err != nil {
			t.Fatalf("re-encoding a decoded frame: %v", err)
		}
		back, err := readFrame(bufio.NewReader(bytes.NewReader(again)))
		if err != nil {
			t.Fatalf("decoding a re-encoded frame: %v", err)
		}
		if back.Code != cmd.Code || back.Opaque != cmd.Opaque || !bytes.Equal(back.Body, cmd.Body) || len(back.ExtFields) != len(cmd.ExtFields) {
			t.Fatalf("round trip changed the command: %+v -> %+v", cmd, back)
		}
	})
}

func FuzzDecodeStored(f *testing.F) {
	enc := encodeStored(&msgFields{topic: "T", queueID: 1, queueOffset: 2, phys: 3, body: []byte("b"),
		properties: "TAGS\x01x\x02", bornHost: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 9}})
	f.Add(enc)
	f.Add(enc[:40])
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := decodeStored(data)
		if err != nil {
			return
		}
		back, err := decodeStored(encodeStored(m))
		if err != nil {
			t.Fatalf("re-decoding: %v", err)
		}
		if back.topic != m.topic || !bytes.Equal(back.body, m.body) || back.properties != m.properties || back.phys != m.phys {
			t.Fatalf("round trip changed the message")
		}
	})
}

func FuzzDecodeBatch(f *testing.F) {
	var b []byte
	for _, body := range []string{"a", "bb"} {
		props := "UNIQ_KEY\x01x\x02"
		total := 20 + len(body) + 2 + len(props)
		b = binary.BigEndian.AppendUint32(b, uint32(total))
		b = binary.BigEndian.AppendUint32(b, 0)
		b = binary.BigEndian.AppendUint32(b, 0)
		b = binary.BigEndian.AppendUint32(b, 0)
		b = binary.BigEndian.AppendUint32(b, uint32(len(body)))
		b = append(b, body...)
		b = binary.BigEndian.AppendUint16(b, uint16(len(props)))
		b = append(b, props...)
	}
	f.Add(b)
	f.Fuzz(func(t *testing.T, data []byte) {
		entries, err := decodeBatch(data)
		if err != nil {
			return
		}
		for _, e := range entries {
			_ = parseProperties(e.properties)
		}
	})
}
