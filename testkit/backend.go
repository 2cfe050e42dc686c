package testkit

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/pubsub/tests"
)

// Backend is one message broker seen through Watermill's interfaces, scoped to one test: every
// publisher and subscriber it returns is closed, and every server it started is stopped, by
// the test's Cleanup. Methods that cannot get what they need fail the test (or skip it, see
// the package documentation); they never return nil.
type Backend interface {
	// Name is the short, stable name used for subtests and TESTKIT_BACKENDS.
	Name() string
	// Topic returns a fresh topic name that no other test uses and that is valid on this
	// broker (RocketMQ, NATS stream and SQL table names each restrict characters and length).
	// The topic exists when Topic returns, so publishing before subscribing is safe.
	Topic(tb testing.TB) string
	// Publisher returns a new publisher.
	Publisher(tb testing.TB) message.Publisher
	// Subscriber returns a subscriber that receives every message of the topics it subscribes
	// to, independently of any other subscriber (fan-out).
	Subscriber(tb testing.TB) message.Subscriber
	// GroupSubscriber returns a member of the consumer group named group: members of one group
	// share the messages of a topic between them (competing consumers). The name only needs
	// to be unique within the test; backends make it valid for the broker.
	GroupSubscriber(tb testing.TB, group string) message.Subscriber
	// Features describes the backend's delivery semantics with the fields of Watermill's
	// tests.Features, read as testkit's tests check them: Persistent means a consumer group
	// keeps messages while it has no members; NewSubscriberReceivesOldMessages means a new
	// fan-out subscriber or a new group receives messages published before it subscribed.
	Features() tests.Features
}

// backendFactory is one entry of the matrix Each runs.
type backendFactory struct {
	name string
	new  func(tb testing.TB) Backend
}

// factories lists the matrix in the order Each runs it: the in-process backends first, so a
// failure in the shared logic shows up before any external service is involved.
func factories() []backendFactory {
	return []backendFactory{
		{"gochannel", func(tb testing.TB) Backend { return GoChannel(tb) }},
		{"rocketmq", func(tb testing.TB) Backend { return RocketMQ(tb) }},
		{"nats", func(tb testing.TB) Backend { return NATS(tb) }},
		{"redis", func(tb testing.TB) Backend { return Redis(tb) }},
		{"postgres", func(tb testing.TB) Backend { return PostgreSQL(tb) }},
		{"rabbitmq", func(tb testing.TB) Backend { return RabbitMQ(tb) }},
	}
}

// Names lists the backends Each runs, in order.
func Names() []string {
	var names []string
	for _, f := range factories() {
		names = append(names, f.name)
	}
	return names
}

// Runner is what Each needs from *testing.T and *testing.B: T is the type itself, so that the
// subtest function receives the same kind of value as the caller's.
type Runner[T any] interface {
	testing.TB
	Run(name string, f func(T)) bool
}

// Each runs fn once per backend, each in its own subtest (or sub-benchmark) named after the
// backend. It works for tests and benchmarks alike:
//
//	testkit.Each(t, func(t *testing.T, b testkit.Backend) { ... })
//	testkit.Each(b, func(b *testing.B, be testkit.Backend) { ... })
//
// TESTKIT_BACKENDS (comma separated names, see Names) limits the run to some backends.
func Each[T Runner[T]](t T, fn func(T, Backend)) {
	t.Helper()
	selected, err := selectedBackends(os.Getenv("TESTKIT_BACKENDS"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range factories() {
		if selected != nil && !selected[f.name] {
			continue
		}
		t.Run(f.name, func(t T) {
			fn(t, f.new(t))
		})
	}
}

// selectedBackends parses TESTKIT_BACKENDS; nil means all.
func selectedBackends(env string) (map[string]bool, error) {
	if strings.TrimSpace(env) == "" {
		return nil, nil
	}
	known := Names()
	selected := map[string]bool{}
	for _, name := range strings.Split(env, ",") {
		name = strings.TrimSpace(name)
		if name == "" {
			continue
		}
		if !slices.Contains(known, name) {
			return nil, fmt.Errorf("testkit: TESTKIT_BACKENDS names unknown backend %q (known: %s)", name, strings.Join(known, ", "))
		}
		selected[name] = true
	}
	return selected, nil
}

// unavailable reports a backend whose server cannot be reached: a skip for local runs, a
// failure in CI (CI=true), where every service is expected to run and a skip would hide that
// the backend was never tested.
func unavailable(tb testing.TB, backend, addr string, err error) {
	tb.Helper()
	msg := fmt.Sprintf("testkit: %s not available at %s: %v (run scripts/test-services.sh, or set the address variable)", backend, addr, err)
	if os.Getenv("CI") == "true" {
		tb.Fatal(msg + "; CI=true, so this fails instead of skipping")
	}
	tb.Skip(msg)
}

// randomID returns n random hex characters; topic and group names need uniqueness across test
// runs against persistent servers, not just within one process.
func randomID(n int) string {
	b := make([]byte, (n+1)/2)
	_, _ = rand.Read(b) // crypto/rand.Read never fails (Go 1.24+)
	return hex.EncodeToString(b)[:n]
}

// newTopicName builds a unique name of at most maxLen characters from [A-Za-z0-9_-], the
// intersection of what every backend accepts. The test name is kept (shortened) to make
// leftovers on a shared server traceable to their test.
func newTopicName(tb testing.TB, maxLen int) string {
	id := randomID(12)
	name := sanitizeName(tb.Name())
	room := maxLen - len("tk--") - len(id)
	if len(name) > room {
		name = name[len(name)-room:] // the end of a subtest path is its most specific part
	}
	return "tk-" + strings.Trim(name, "_-") + "-" + id
}

// sanitizeName maps anything outside [A-Za-z0-9_-] to '_'.
func sanitizeName(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '_', r == '-':
			return r
		}
		return '_'
	}, s)
}

// logger returns the Watermill logger the adapters get: errors by default, since those point at
// real problems, everything down to trace with TESTKIT_LOG=debug. It writes to stderr rather
// than t.Log because adapters log from goroutines that may outlive the test.
func logger() watermill.LoggerAdapter {
	level := slog.LevelError
	if os.Getenv("TESTKIT_LOG") == "debug" {
		level = watermill.LevelTrace
	}
	return shutdownQuiet{watermill.NewSlogLogger(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level})))}
}

// shutdownQuiet drops errors that only say a context was cancelled: the adapters (Redis and
// SQL subscribers among them) log those as errors while they are being closed, which is how
// every test ends.
type shutdownQuiet struct{ watermill.LoggerAdapter }

func (l shutdownQuiet) Error(msg string, err error, fields watermill.LogFields) {
	if errors.Is(err, context.Canceled) {
		l.LoggerAdapter.Debug(msg+": "+err.Error(), fields)
		return
	}
	l.LoggerAdapter.Error(msg, err, fields)
}

func (l shutdownQuiet) With(fields watermill.LogFields) watermill.LoggerAdapter {
	return shutdownQuiet{l.LoggerAdapter.With(fields)}
}

// closeOnCleanup closes c when the test ends and reports a failing Close, so leaks and broken
// shutdowns show up in the test that caused them.
func closeOnCleanup(tb testing.TB, what string, c interface{ Close() error }) {
	tb.Cleanup(func() {
		if err := c.Close(); err != nil {
			tb.Errorf("testkit: closing %s: %v", what, err)
		}
	})
}
