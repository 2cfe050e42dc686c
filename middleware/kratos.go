package middleware

import (
	"context"
	"strings"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/go-kratos/kratos/v2/metadata"
)

// Kratos metadata prefixes: keys starting with KratosMetadataPrefix travel one hop (as Kratos'
// metadata.Server middleware accepts them); keys starting with KratosGlobalPrefix are
// forwarded again by every service they reach.
const (
	KratosMetadataPrefix = "x-md-"
	KratosGlobalPrefix   = "x-md-global-"
)

// KratosMetadata returns handler middleware that puts the message's "x-md-" metadata keys into
// the Kratos server metadata of the handler's context (metadata.FromServerContext), as Kratos'
// HTTP and gRPC servers do with request headers, and forwards the "x-md-global-" keys to the
// messages the handler produces, as a Kratos client does on an outgoing call.
func KratosMetadata() message.HandlerMiddleware {
	return func(h message.HandlerFunc) message.HandlerFunc {
		return func(msg *message.Message) ([]*message.Message, error) {
			md := metadata.New()
			for k, v := range msg.Metadata {
				if strings.HasPrefix(strings.ToLower(k), KratosMetadataPrefix) {
					md.Add(k, v)
				}
			}
			orig := msg.Context()
			ctx := metadata.NewServerContext(orig, md)
			msg.SetContext(ctx)
			produced, err := h(msg)
			msg.SetContext(orig)
			for _, out := range produced {
				if out.Metadata == nil {
					out.Metadata = message.Metadata{}
				}
				copyGlobal(md, out.Metadata)
			}
			return produced, err
		}
	}
}

// InjectKratosMetadata writes the Kratos metadata of ctx into md the way a Kratos client
// middleware writes request headers: all client metadata (metadata.NewClientContext,
// AppendToClientContext) and the "x-md-global-" keys of the server metadata the current
// request arrived with. Keys are lower case, as Kratos stores them; a key with several values
// keeps the first one, because message metadata holds one value per key.
func InjectKratosMetadata(ctx context.Context, md message.Metadata) {
	if server, ok := metadata.FromServerContext(ctx); ok {
		copyGlobal(server, md)
	}
	if client, ok := metadata.FromClientContext(ctx); ok {
		client.Range(func(k string, v []string) bool {
			if len(v) > 0 {
				md.Set(k, v[0])
			}
			return true
		})
	}
}

func copyGlobal(from metadata.Metadata, to message.Metadata) {
	from.Range(func(k string, v []string) bool {
		if len(v) > 0 && strings.HasPrefix(k, KratosGlobalPrefix) {
			to.Set(k, v[0])
		}
		return true
	})
}

// KratosMetadataPublisher wraps pub so that every published message carries the Kratos
// metadata of its context (see InjectKratosMetadata). Publish through router.Publisher, whose
// messages carry the caller's context.
func KratosMetadataPublisher(pub message.Publisher) message.Publisher {
	return kratosMetadataPublisher{pub}
}

type kratosMetadataPublisher struct{ message.Publisher }

func (p kratosMetadataPublisher) Publish(topic string, msgs ...*message.Message) error {
	for _, msg := range msgs {
		if msg == nil {
			continue
		}
		if msg.Metadata == nil {
			msg.Metadata = message.Metadata{}
		}
		InjectKratosMetadata(msg.Context(), msg.Metadata)
	}
	return p.Publisher.Publish(topic, msgs...)
}
