package testkit

import (
	"regexp"
	"strings"
	"testing"
)

// validName is what every backend accepts in a topic: RocketMQ's ^[%|a-zA-Z0-9_-]+$ without
// its special characters, which also suits NATS subjects and stream names, SQL table names
// and AMQP exchange names.
var validName = regexp.MustCompile(`^[a-zA-Z0-9_-]+$`)

func TestTopicNamesAreValidEverywhere(t *testing.T) {
	// A long subtest path with characters no broker accepts, as table-driven tests produce.
	long := strings.Repeat("order placed/ünïcode.*> ", 12)
	t.Run(long, func(t *testing.T) {
		for _, maxLen := range []int{45, 100, 127} {
			a, b := newTopicName(t, maxLen), newTopicName(t, maxLen)
			for _, name := range []string{a, b} {
				if len(name) > maxLen {
					t.Errorf("topic %q has %d characters, limit %d", name, len(name), maxLen)
				}
				if !validName.MatchString(name) {
					t.Errorf("topic %q has characters outside [a-zA-Z0-9_-]", name)
				}
			}
			if a == b {
				t.Errorf("two topics for one test are both %q", a)
			}
		}
	})
}

func TestRocketMQGroupNames(t *testing.T) {
	long := strings.Repeat("billing service ", 20)
	a, b := rocketMQName(long), rocketMQName(long)
	if a != b {
		t.Errorf("one group name mapped to %q and %q: members would not meet", a, b)
	}
	if len(a) > 120 || !validName.MatchString(a) {
		t.Errorf("group %q is not a short valid RocketMQ name", a)
	}
	if other := rocketMQName(strings.Repeat("billing service ", 19) + "x"); other == a {
		t.Errorf("different long group names both mapped to %q", a)
	}
	if got := rocketMQName("orders.v1"); got != "orders_v1" {
		t.Errorf("rocketMQName(orders.v1) = %q, want orders_v1", got)
	}
}

func TestSelectedBackends(t *testing.T) {
	all, err := selectedBackends(" ")
	if err != nil || all != nil {
		t.Errorf("empty TESTKIT_BACKENDS: got %v, %v; want all backends", all, err)
	}
	some, err := selectedBackends("nats, redis")
	if err != nil || len(some) != 2 || !some["nats"] || !some["redis"] {
		t.Errorf("TESTKIT_BACKENDS=nats, redis: got %v, %v", some, err)
	}
	if _, err := selectedBackends("nats,kafka"); err == nil || !strings.Contains(err.Error(), `"kafka"`) {
		t.Errorf("unknown backend: got error %v, want one naming kafka", err)
	}
}
