package rocketmq_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/apache/rocketmq-client-go/v2/primitive"

	"github.com/rocketbus/rocketbus/rocketmq"
)

// FuzzMarshalerRoundTrip: any UUID, payload and metadata either round-trips through RocketMQ's
// property encoding (as the broker stores and returns it) or is refused with ErrInvalidMetadata.
func FuzzMarshalerRoundTrip(f *testing.F) {
	f.Add("uuid-1", []byte("payload"), "color", "blue", rocketmq.MetadataTags, "TagA")
	f.Add("", []byte{}, "k\x01", "v", "", "")
	f.Add("u", []byte{0, 1, 2}, rocketmq.MetadataKeys, "a  b c", "TAGS", "x")
	f.Add("u", []byte("x"), "_watermill_delayed_for", "5s", "x-md-global-user", "42")
	f.Add("u", []byte("x"), rocketmq.MetadataDelayLevel, "-1", "v\x02", "w")
	f.Fuzz(func(t *testing.T, uuid string, payload []byte, k1, v1, k2, v2 string) {
		in := message.NewMessage(uuid, payload)
		in.Metadata.Set(k1, v1)
		in.Metadata.Set(k2, v2)
		m := rocketmq.DefaultMarshaler{}
		out, err := m.Marshal("topic", in)
		if err != nil {
			if !errors.Is(err, rocketmq.ErrInvalidMetadata) {
				t.Fatalf("Marshal failed without ErrInvalidMetadata: %v", err)
			}
			if !strings.Contains(err.Error(), "rocketmq:") {
				t.Fatalf("error does not say where it comes from: %v", err)
			}
			return
		}
		// What the broker stores and a consumer reads back: the properties' wire encoding.
		ext := &primitive.MessageExt{Message: primitive.Message{Topic: "topic", Body: out.Body}}
		ext.UnmarshalProperties([]byte(out.MarshallProperties()))
		back, err := m.Unmarshal(ext)
		if err != nil {
			t.Fatalf("Unmarshal of a marshalled message: %v", err)
		}
		if back.UUID != uuid {
			t.Fatalf("UUID %q came back as %q", uuid, back.UUID)
		}
		if string(back.Payload) != string(payload) {
			t.Fatalf("payload changed")
		}
		for k, v := range in.Metadata {
			got := back.Metadata.Get(k)
			switch k {
			case rocketmq.MetadataKeys:
				if strings.Join(strings.Fields(v), " ") != got {
					t.Fatalf("keys %q came back as %q", v, got)
				}
			case rocketmq.MetadataDelayLevel, rocketmq.MetadataRetryDelayLevel:
				// Consumed by the publisher (broker delay), not carried as metadata.
			default:
				if got != v {
					t.Fatalf("metadata %q=%q came back as %q", k, v, got)
				}
			}
		}
	})
}
