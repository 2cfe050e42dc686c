package rocketmq

import (
	"context"
	"time"

	"github.com/apache/rocketmq-client-go/v2/primitive"
)

// deliveryInfo is what the Subscriber knows about a delivered message beyond its payload and
// metadata. One value per message keeps the context chain short.
type deliveryInfo struct {
	msgID          string
	topic          string
	tags           string
	keys           string
	queueID        int
	queueOffset    int64
	reconsumeTimes int32
	bornTimestamp  time.Time
	group          string
}

type deliveryInfoKey struct{}

func withDeliveryInfo(ctx context.Context, ext *primitive.MessageExt, group string) context.Context {
	info := &deliveryInfo{
		msgID:          ext.MsgId,
		topic:          ext.Topic,
		tags:           ext.GetProperty(primitive.PropertyTags),
		keys:           ext.GetProperty(primitive.PropertyKeys),
		queueOffset:    ext.QueueOffset,
		reconsumeTimes: ext.ReconsumeTimes,
		bornTimestamp:  time.UnixMilli(ext.BornTimestamp),
		group:          group,
	}
	if ext.Queue != nil {
		info.queueID = ext.Queue.QueueId
	}
	return context.WithValue(ctx, deliveryInfoKey{}, info)
}

func infoFromCtx(ctx context.Context) (*deliveryInfo, bool) {
	if ctx == nil {
		return nil, false
	}
	info, ok := ctx.Value(deliveryInfoKey{}).(*deliveryInfo)
	return info, ok
}

// MsgIDFromCtx returns the RocketMQ message id (the client-generated UNIQ_KEY) of a received
// message.
func MsgIDFromCtx(ctx context.Context) (string, bool) {
	info, ok := infoFromCtx(ctx)
	if !ok {
		return "", false
	}
	return info.msgID, true
}

// TopicFromCtx returns the topic a message was received from (the original topic for retried
// messages).
func TopicFromCtx(ctx context.Context) (string, bool) {
	info, ok := infoFromCtx(ctx)
	if !ok {
		return "", false
	}
	return info.topic, true
}

// TagsFromCtx returns the TAGS of a received message.
func TagsFromCtx(ctx context.Context) (string, bool) {
	info, ok := infoFromCtx(ctx)
	if !ok {
		return "", false
	}
	return info.tags, true
}

// KeysFromCtx returns the KEYS of a received message (space separated).
func KeysFromCtx(ctx context.Context) (string, bool) {
	info, ok := infoFromCtx(ctx)
	if !ok {
		return "", false
	}
	return info.keys, true
}

// QueueIDFromCtx returns the queue id a message was pulled from.
func QueueIDFromCtx(ctx context.Context) (int, bool) {
	info, ok := infoFromCtx(ctx)
	if !ok {
		return 0, false
	}
	return info.queueID, true
}

// QueueOffsetFromCtx returns the message's offset in its queue.
func QueueOffsetFromCtx(ctx context.Context) (int64, bool) {
	info, ok := infoFromCtx(ctx)
	if !ok {
		return 0, false
	}
	return info.queueOffset, true
}

// ReconsumeTimesFromCtx returns how many times the broker has redelivered the message.
func ReconsumeTimesFromCtx(ctx context.Context) (int32, bool) {
	info, ok := infoFromCtx(ctx)
	if !ok {
		return 0, false
	}
	return info.reconsumeTimes, true
}

// BornTimestampFromCtx returns when the producer created the message.
func BornTimestampFromCtx(ctx context.Context) (time.Time, bool) {
	info, ok := infoFromCtx(ctx)
	if !ok {
		return time.Time{}, false
	}
	return info.bornTimestamp, true
}

// ConsumerGroupFromCtx returns the consumer group that received the message.
func ConsumerGroupFromCtx(ctx context.Context) (string, bool) {
	info, ok := infoFromCtx(ctx)
	if !ok {
		return "", false
	}
	return info.group, true
}
