package minirmq

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strconv"

	jsoniter "github.com/json-iterator/go"
)

// Wire limits of the real broker (com.rocketmq.remoting.frameMaxLength).
const (
	maxFrameLength = 16 << 20
	flagResponse   = 1
	flagOneway     = 2

	serializeJSON     = 0
	serializeRocketMQ = 1
)

// command is one remoting frame: a request or a response. Header fields follow the real
// RemotingCommand; extFields values are always strings on the wire.
type command struct {
	Code      int16
	Language  string
	Version   int32
	Opaque    int32
	Flag      int32
	Remark    string
	ExtFields map[string]string
	Body      []byte

	// serializeType is the header encoding the frame arrived in; replies use the same one.
	serializeType byte
}

func (c *command) isResponse() bool { return c.Flag&flagResponse != 0 }

func (c *command) ext(key string) string { return c.ExtFields[key] }

func (c *command) extInt(key string) (int64, error) {
	v, ok := c.ExtFields[key]
	if !ok {
		return 0, fmt.Errorf("missing header field %q", key)
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("header field %q is not a number: %q", key, v)
	}
	return n, nil
}

// extIntDefault reads an optional numeric header field.
func (c *command) extIntDefault(key string, def int64) int64 {
	n, err := c.extInt(key)
	if err != nil {
		return def
	}
	return n
}

var errFrame = errors.New("malformed frame")

// headerJSON codes headers with jsoniter's streaming API: every request and response has one,
// and reflection-based JSON was the broker's largest cost in the send benchmark.
var headerJSON = jsoniter.Config{EscapeHTML: false}.Froze()

// readFrame reads one frame. Any error closes the connection: the stream cannot be resynchronised.
func readFrame(r *bufio.Reader) (*command, error) {
	return readFrameInto(r, nil)
}

// maxReusedFrame bounds the read buffer a connection keeps between frames.
const maxReusedFrame = 1 << 20

// readFrameInto reads one frame into *buf when it is large enough, so a connection reuses one
// buffer; the returned command's Body then aliases it and is valid only until the next read.
func readFrameInto(r *bufio.Reader, buf *[]byte) (*command, error) {
	var lenBuf [4]byte
	if _, err := io.ReadFull(r, lenBuf[:]); err != nil {
		return nil, err
	}
	length := int64(binary.BigEndian.Uint32(lenBuf[:]))
	if length < 4 || length > maxFrameLength {
		return nil, fmt.Errorf("%w: frame length %d outside [4, %d]", errFrame, length, maxFrameLength)
	}
	var frame []byte
	switch {
	case buf != nil && int64(cap(*buf)) >= length:
		frame = (*buf)[:length]
	case buf != nil && length <= maxReusedFrame:
		*buf = make([]byte, length, max(length, 4<<10))
		frame = *buf
	default:
		frame = make([]byte, length)
	}
	if _, err := io.ReadFull(r, frame); err != nil {
		return nil, fmt.Errorf("%w: truncated frame: %v", errFrame, err)
	}
	return decodeFrame(frame)
}

// decodeFrame decodes a frame without its leading length field.
func decodeFrame(frame []byte) (*command, error) {
	if len(frame) < 4 {
		return nil, fmt.Errorf("%w: %d bytes, no header length", errFrame, len(frame))
	}
	mark := binary.BigEndian.Uint32(frame[:4])
	serializeType := byte(mark >> 24)
	headerLen := int(mark & 0xFFFFFF)
	if headerLen > len(frame)-4 {
		return nil, fmt.Errorf("%w: header length %d exceeds frame (%d bytes)", errFrame, headerLen, len(frame)-4)
	}
	header := frame[4 : 4+headerLen]
	var (
		cmd *command
		err error
	)
	switch serializeType {
	case serializeJSON:
		cmd, err = decodeJSONHeader(header)
	case serializeRocketMQ:
		cmd, err = decodeBinaryHeader(header)
	default:
		err = fmt.Errorf("%w: unknown serialize type %d", errFrame, serializeType)
	}
	if err != nil {
		return nil, err
	}
	cmd.serializeType = serializeType
	if body := frame[4+headerLen:]; len(body) > 0 {
		cmd.Body = body
	}
	return cmd, nil
}

func decodeJSONHeader(b []byte) (*command, error) {
	it := headerJSON.BorrowIterator(b)
	defer headerJSON.ReturnIterator(it)
	// Sized for a send header, the most common request, so the map never grows.
	cmd := &command{ExtFields: make(map[string]string, 16)}
	it.ReadObjectCB(func(it *jsoniter.Iterator, field string) bool {
		switch field {
		case "code":
			cmd.Code = it.ReadInt16()
		case "language":
			if it.WhatIsNext() == jsoniter.StringValue {
				cmd.Language = it.ReadString()
			} else {
				it.Skip()
			}
		case "version":
			cmd.Version = it.ReadInt32()
		case "opaque":
			cmd.Opaque = it.ReadInt32()
		case "flag":
			cmd.Flag = it.ReadInt32()
		case "remark":
			cmd.Remark = it.ReadString()
		case "extFields":
			if it.WhatIsNext() == jsoniter.NilValue {
				it.Skip()
				break
			}
			it.ReadMapCB(func(it *jsoniter.Iterator, key string) bool {
				if it.WhatIsNext() != jsoniter.StringValue {
					it.ReportError("extFields", "value of "+strconv.Quote(key)+" is not a string")
					return false
				}
				cmd.ExtFields[key] = it.ReadString()
				return true
			})
		default:
			it.Skip()
		}
		return it.Error == nil
	})
	if it.Error != nil && it.Error != io.EOF {
		return nil, fmt.Errorf("%w: invalid JSON header: %v", errFrame, it.Error)
	}
	return cmd, nil
}

// encodeJSONHeader writes a header without reflection: every frame has one.
func encodeJSONHeader(cmd *command) []byte {
	st := headerJSON.BorrowStream(nil)
	defer headerJSON.ReturnStream(st)
	st.WriteObjectStart()
	st.WriteObjectField("code")
	st.WriteInt16(cmd.Code)
	if len(cmd.ExtFields) > 0 {
		st.WriteMore()
		st.WriteObjectField("extFields")
		st.WriteObjectStart()
		first := true
		for k, v := range cmd.ExtFields {
			if !first {
				st.WriteMore()
			}
			first = false
			st.WriteObjectField(k)
			st.WriteString(v)
		}
		st.WriteObjectEnd()
	}
	st.WriteMore()
	st.WriteObjectField("flag")
	st.WriteInt32(cmd.Flag)
	st.WriteMore()
	st.WriteObjectField("language")
	st.WriteString(cmd.Language)
	st.WriteMore()
	st.WriteObjectField("opaque")
	st.WriteInt32(cmd.Opaque)
	if cmd.Remark != "" {
		st.WriteMore()
		st.WriteObjectField("remark")
		st.WriteString(cmd.Remark)
	}
	st.WriteMore()
	st.WriteObjectField("serializeTypeCurrentRPC")
	st.WriteString("JSON")
	st.WriteMore()
	st.WriteObjectField("version")
	st.WriteInt32(cmd.Version)
	st.WriteObjectEnd()
	return append([]byte(nil), st.Buffer()...)
}

// languageCodes maps RocketMQ's LanguageCode ordinals, used by the binary header form.
var languageCodes = []string{"JAVA", "CPP", "DOTNET", "PYTHON", "DELPHI", "ERLANG", "RUBY", "OTHER", "HTTP", "GO", "PHP", "OMS", "RUST"}

func languageName(code byte) string {
	if int(code) < len(languageCodes) {
		return languageCodes[code]
	}
	return "OTHER"
}

func languageCode(name string) byte {
	for i, n := range languageCodes {
		if n == name {
			return byte(i)
		}
	}
	return 0
}

// decodeBinaryHeader decodes RocketMQ's compact header: code int16, language byte, version
// int16, opaque int32, flag int32, remark (int32 length + bytes), extFields (int32 length +
// repeated int16 key length, key, int32 value length, value).
func decodeBinaryHeader(b []byte) (*command, error) {
	rd := bytes.NewReader(b)
	var fixed struct {
		Code     int16
		Language byte
		Version  int16
		Opaque   int32
		Flag     int32
	}
	if err := binary.Read(rd, binary.BigEndian, &fixed); err != nil {
		return nil, fmt.Errorf("%w: short binary header", errFrame)
	}
	remark, err := readLenPrefixed32(rd)
	if err != nil {
		return nil, fmt.Errorf("%w: remark: %v", errFrame, err)
	}
	extBytes, err := readLenPrefixed32(rd)
	if err != nil {
		return nil, fmt.Errorf("%w: extFields: %v", errFrame, err)
	}
	ext := map[string]string{}
	er := bytes.NewReader(extBytes)
	for er.Len() > 0 {
		var kl int16
		if err := binary.Read(er, binary.BigEndian, &kl); err != nil || kl < 0 || int(kl) > er.Len() {
			return nil, fmt.Errorf("%w: extFields key length", errFrame)
		}
		k := make([]byte, kl)
		_, _ = io.ReadFull(er, k)
		v, err := readLenPrefixed32(er)
		if err != nil {
			return nil, fmt.Errorf("%w: extFields value of %q: %v", errFrame, k, err)
		}
		ext[string(k)] = string(v)
	}
	return &command{Code: fixed.Code, Language: languageName(fixed.Language), Version: int32(fixed.Version),
		Opaque: fixed.Opaque, Flag: fixed.Flag, Remark: string(remark), ExtFields: ext}, nil
}

func readLenPrefixed32(rd *bytes.Reader) ([]byte, error) {
	var n int32
	if err := binary.Read(rd, binary.BigEndian, &n); err != nil {
		return nil, errors.New("missing length")
	}
	if n < 0 || int(n) > rd.Len() {
		return nil, fmt.Errorf("length %d exceeds remaining %d bytes", n, rd.Len())
	}
	b := make([]byte, n)
	_, _ = io.ReadFull(rd, b)
	return b, nil
}

// encodeFrame renders cmd, including the leading length field, in cmd.serializeType.
func encodeFrame(cmd *command) ([]byte, error) {
	var header []byte
	switch cmd.serializeType {
	case serializeRocketMQ:
		header = encodeBinaryHeader(cmd)
	default:
		header = encodeJSONHeader(cmd)
	}
	out := make([]byte, 8, 8+len(header)+len(cmd.Body))
	binary.BigEndian.PutUint32(out[0:4], uint32(4+len(header)+len(cmd.Body)))
	binary.BigEndian.PutUint32(out[4:8], uint32(cmd.serializeType)<<24|uint32(len(header)))
	out = append(out, header...)
	return append(out, cmd.Body...), nil
}

func encodeBinaryHeader(cmd *command) []byte {
	var ext bytes.Buffer
	for k, v := range cmd.ExtFields {
		_ = binary.Write(&ext, binary.BigEndian, int16(len(k)))
		ext.WriteString(k)
		_ = binary.Write(&ext, binary.BigEndian, int32(len(v)))
		ext.WriteString(v)
	}
	var b bytes.Buffer
	_ = binary.Write(&b, binary.BigEndian, cmd.Code)
	b.WriteByte(languageCode(cmd.Language))
	_ = binary.Write(&b, binary.BigEndian, int16(cmd.Version))
	_ = binary.Write(&b, binary.BigEndian, cmd.Opaque)
	_ = binary.Write(&b, binary.BigEndian, cmd.Flag)
	_ = binary.Write(&b, binary.BigEndian, int32(len(cmd.Remark)))
	b.WriteString(cmd.Remark)
	_ = binary.Write(&b, binary.BigEndian, int32(ext.Len()))
	b.Write(ext.Bytes())
	return b.Bytes()
}
