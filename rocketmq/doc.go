// Package rocketmq implements Watermill's message.Publisher and message.Subscriber over
// Apache RocketMQ, using github.com/apache/rocketmq-client-go/v2.
package rocketmq
