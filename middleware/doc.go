// Package middleware holds the Watermill handler middleware that Watermill itself lacks:
// trace propagation, RocketMQ-native retry and Kratos metadata.
package middleware
