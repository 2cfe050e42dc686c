package router

import (
	"encoding/json"
	"fmt"
	"strings"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

// Codec turns values into message payloads and back. Its method set is the one of Kratos'
// encoding.Codec, so any Kratos codec (encoding.GetCodec("yaml"), ...) can be used directly.
// Implementations must be safe for concurrent use: handlers decode in parallel.
type Codec interface {
	// Marshal returns the wire form of v.
	Marshal(v any) ([]byte, error)
	// Unmarshal parses data into v, which is a non-nil pointer.
	Unmarshal(data []byte, v any) error
	// Name identifies the codec (for example in errors and in the poison queue's metadata).
	Name() string
}

// Names of the codecs that ship with the package.
const (
	CodecNameJSON     = "json"
	CodecNameProtobuf = "protobuf"
)

// JSON returns the default codec. Protocol Buffers messages are written with protojson, so that
// a producer and a consumer agree on field names whichever of the two uses generated types;
// unknown fields are ignored on read, so that producers can add fields before consumers know them.
func JSON() Codec { return jsonCodec{} }

// Protobuf returns a codec for the Protocol Buffers binary format. Values must implement
// proto.Message; anything else is an error, never a silent fallback to another format.
func Protobuf() Codec { return protobufCodec{} }

// CodecByName returns the codec a configuration names: "json" (the default when name is empty)
// or "protobuf" (alias "proto"). Names are case-insensitive.
func CodecByName(name string) (Codec, error) {
	switch strings.ToLower(strings.TrimSpace(name)) {
	case "", CodecNameJSON:
		return JSON(), nil
	case CodecNameProtobuf, "proto":
		return Protobuf(), nil
	default:
		return nil, fmt.Errorf("router: unknown codec %q (known: %q, %q; pass a Codec value for others)",
			name, CodecNameJSON, CodecNameProtobuf)
	}
}

type jsonCodec struct{}

var protojsonUnmarshal = protojson.UnmarshalOptions{DiscardUnknown: true}

func (jsonCodec) Name() string { return CodecNameJSON }

func (jsonCodec) Marshal(v any) ([]byte, error) {
	if m, ok := v.(proto.Message); ok {
		return protojson.Marshal(m)
	}
	return json.Marshal(v)
}

func (jsonCodec) Unmarshal(data []byte, v any) error {
	if m, ok := v.(proto.Message); ok {
		return protojsonUnmarshal.Unmarshal(data, m)
	}
	return json.Unmarshal(data, v)
}

type protobufCodec struct{}

func (protobufCodec) Name() string { return CodecNameProtobuf }

func (protobufCodec) Marshal(v any) ([]byte, error) {
	m, ok := v.(proto.Message)
	if !ok {
		return nil, fmt.Errorf("router: protobuf codec cannot marshal %T: it does not implement proto.Message", v)
	}
	return proto.Marshal(m)
}

func (protobufCodec) Unmarshal(data []byte, v any) error {
	m, ok := v.(proto.Message)
	if !ok {
		return fmt.Errorf("router: protobuf codec cannot unmarshal into %T: it does not implement proto.Message", v)
	}
	return proto.Unmarshal(data, m)
}
