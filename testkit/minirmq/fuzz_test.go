package minirmq

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
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

// FuzzRecoverDataDir starts a server on a data directory whose only segment, or checkpoint,
// holds arbitrary bytes (a damaged disk, a file from elsewhere): New must fail with an error or
// start, never panic, and a started server must accept a send and start again from what it wrote.
func FuzzRecoverDataDir(f *testing.F) {
	seed := f.TempDir()
	srv, err := New(WithDataDir(seed))
	if err != nil {
		f.Fatal(err)
	}
	srv.mu.Lock()
	topic := srv.store.createTopic("fuzz", 2, 2, permRW)
	for i := 0; i < 3; i++ {
		if _, _, err := srv.putMessage(putArgs{topic: topic, queueID: int32(i % 2), body: []byte("body"),
			properties: "TAGS\x01t\x02DELAY\x012\x02"}, time.Now()); err != nil {
			f.Fatal(err)
		}
	}
	srv.mu.Unlock()
	if err := srv.Close(); err != nil {
		f.Fatal(err)
	}
	segment, err := os.ReadFile(filepath.Join(seed, commitLogDir, segmentName(0)))
	if err != nil {
		f.Fatal(err)
	}
	checkpoint, err := os.ReadFile(filepath.Join(seed, checkpointFile))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(segment, checkpoint)
	f.Add(segment[:len(segment)/2], []byte(nil))
	f.Add([]byte(nil), []byte(`{"version":1,"nextPhys":5,"topics":[{"name":"x","maxOffsets":[3]}]}`))
	f.Fuzz(func(t *testing.T, segment, checkpoint []byte) {
		dir := t.TempDir()
		if err := os.MkdirAll(filepath.Join(dir, commitLogDir), 0o755); err != nil {
			t.Fatal(err)
		}
		if len(segment) > 0 {
			if err := os.WriteFile(filepath.Join(dir, commitLogDir, segmentName(0)), segment, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		if len(checkpoint) > 0 {
			if err := os.WriteFile(filepath.Join(dir, checkpointFile), checkpoint, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		s, err := New(WithDataDir(dir))
		if err != nil {
			return
		}
		s.mu.Lock()
		_, _, err = s.putMessage(putArgs{topic: s.systemTopic("after", 1), body: []byte("x")}, time.Now())
		s.mu.Unlock()
		if err != nil {
			t.Fatalf("send after recovery: %v", err)
		}
		want := len(s.Messages("after"))
		if err := s.Close(); err != nil {
			t.Fatalf("close: %v", err)
		}
		again, err := New(WithDataDir(dir))
		if err != nil {
			t.Fatalf("a directory the server wrote itself must start: %v", err)
		}
		defer again.Close()
		if got := len(again.Messages("after")); got != want {
			t.Fatalf("recovered %d messages of the topic written after recovery, want %d", got, want)
		}
	})
}
