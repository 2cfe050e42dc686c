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

// jsonHeader is the JSON form of a header. Language stays raw: Java sends "JAVA", Go "GO".
type jsonHeader struct {
	Code                    int16             `json:"code"`
	Language                string            `json:"language"`
	Version                 int32             `json:"version"`
	Opaque                  int32             `json:"opaque"`
	Flag                    int32             `json:"flag"`
	Remark                  string            `json:"remark,omitempty"`
	ExtFields               map[string]string `json:"extFields,omitempty"`
	SerializeTypeCurrentRPC string            `json:"serializeTypeCurrentRPC,omitempty"`
}

var errFrame = errors.New("malformed frame")

// headerJSON codes headers: every request and response has one, and encoding/json was the
// largest cost of the broker in the send benchmark.
var headerJSON = jsoniter.ConfigCompatibleWithStandardLibrary

// readFrame reads one frame. Any error closes the connection: the stream cannot be resynchronised.
func readFrame(r *bufio.Reader) (*command, error) {
	var lenBuf [4]byte
	if _, err := io.ReadFull(r, lenBuf[:]); err != nil {
		return nil, err
	}
	length := int64(binary.BigEndian.Uint32(lenBuf[:]))
	if length < 4 || length > maxFrameLength {
		return nil, fmt.Errorf("%w: frame length %d outside [4, %d]", errFrame, length, maxFrameLength)
	}
	frame := make([]byte, length)
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
	var h jsonHeader
	if err := headerJSON.Unmarshal(b, &h); err != nil {
		// extFields values sent as numbers are a client bug worth naming precisely.
		return nil, fmt.Errorf("%w: invalid JSON header: %v", errFrame, err)
	}
	if h.ExtFields == nil {
		h.ExtFields = map[string]string{}
	}
	return &command{Code: h.Code, Language: h.Language, Version: h.Version, Opaque: h.Opaque,
		Flag: h.Flag, Remark: h.Remark, ExtFields: h.ExtFields}, nil
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
		h := jsonHeader{Code: cmd.Code, Language: cmd.Language, Version: cmd.Version, Opaque: cmd.Opaque,
			Flag: cmd.Flag, Remark: cmd.Remark, ExtFields: cmd.ExtFields, SerializeTypeCurrentRPC: "JSON"}
		var err error
		if header, err = headerJSON.Marshal(h); err != nil {
			return nil, err
		}
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
