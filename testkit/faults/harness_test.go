package faults

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/apache/rocketmq-client-go/v2/rlog"
	"github.com/google/uuid"
	"go.uber.org/goleak"

	"github.com/rocketbus/rocketbus/router"
)

// EnvReport names the file TestMain writes the results table to (markdown); unset, nothing is
// written. The child consumer process never writes it.
const EnvReport = "FAULTS_REPORT"

func TestMain(m *testing.M) {
	if os.Getenv("FAULTS_LOG") == "" {
		// The client logs every rebalance and reconnect at info level.
		rlog.SetLogLevel("fatal")
	}
	// TestBrokerContainerRestart runs a container; the testcontainers reaper (Ryuk) image cannot
	// be pulled where no registry is reachable, and the test terminates its container itself. An
	// explicit setting wins.
	if _, ok := os.LookupEnv("TESTCONTAINERS_RYUK_DISABLED"); !ok {
		_ = os.Setenv("TESTCONTAINERS_RYUK_DISABLED", "true")
	}
	goleak.VerifyTestMain(reportingM{m}, ignoredGoroutines()...)
}

// reportingM writes the report after the tests ran and before goleak looks for leaks.
type reportingM struct{ m *testing.M }

func (r reportingM) Run() int {
	code := r.m.Run()
	if path := os.Getenv(EnvReport); path != "" && os.Getenv(envChild) == "" {
		if err := writeReport(path); err != nil {
			fmt.Fprintf(os.Stderr, "faults: writing %s: %v\n", path, err)
			if code == 0 {
				code = 1
			}
		}
	}
	return code
}

// ignoredGoroutines are goroutines that belong to the RocketMQ client, not to rocketbus or to
// this suite. A push consumer's Shutdown does not cancel its in-flight long-polling pulls:
// their futures (waitResponse) end only at the client's own 30 s request timeout, even when
// the connection is closed. The client also starts package-level loops and leaves its pull
// and rebalance goroutines sleeping after Shutdown. goleak checks everything else, so a
// subscription, router or handler goroutine outliving Close fails the run.
func ignoredGoroutines() []goleak.Option {
	const client = "github.com/apache/rocketmq-client-go/v2/"
	return []goleak.Option{
		goleak.IgnoreTopFunction(client + "internal/remote.(*ResponseFuture).waitResponse"),
		goleak.IgnoreAnyFunction(client + "internal.GetOrNewRocketMQClient.func1"),
		goleak.IgnoreAnyFunction(client + "internal/remote.(*remotingClient).receiveResponse"),
		goleak.IgnoreAnyFunction(client + "internal/remote.(*remotingClient).connect.func1"),
		goleak.IgnoreAnyFunction(client + "primitive.WithRecover"),
		goleak.IgnoreAnyFunction(client + "consumer.(*pushConsumer).pullMessage"),
		goleak.IgnoreAnyFunction(client + "internal.(*rmqClient).RebalanceImmediately"),
		goleak.IgnoreAnyFunction("github.com/patrickmn/go-cache.(*janitor).Run"),
		goleak.IgnoreAnyFunction("internal/poll.runtime_pollWait"),
	}
}

// payload is the body of every test message; the id is also the Watermill UUID.
type payload struct {
	ID string `json:"id"`
}

// ledger is the store that outlives the consumer: an append-only file with one id per line.
// add writes and fsyncs the line before it returns, and the handler returns nil only after
// add did, so a line means "the handler finished with this message".
type ledger struct {
	mu sync.Mutex
	f  *os.File
}

func openLedger(path string) (*ledger, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	return &ledger{f: f}, nil
}

func (l *ledger) add(id string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, err := l.f.WriteString(id + "\n"); err != nil {
		return err
	}
	return l.f.Sync()
}

func (l *ledger) Close() error { return l.f.Close() }

// readLedger counts the ids in a ledger file; a missing file is an empty ledger. A torn last
// line (a write cut by SIGKILL) is ignored: its handler never returned.
func readLedger(path string) (map[string]int, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return map[string]int{}, nil
	}
	if err != nil {
		return nil, err
	}
	text := string(data)
	if i := strings.LastIndexByte(text, '\n'); i < len(text)-1 {
		text = text[:i+1] // drop a torn last line
	}
	out := map[string]int{}
	for _, line := range strings.Split(text, "\n") {
		if line != "" {
			out[line]++
		}
	}
	return out, nil
}

// newIDs returns n unique message ids.
func newIDs(n int) []string {
	prefix := strings.ReplaceAll(uuid.NewString()[:13], "-", "")
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("%s-%05d", prefix, i)
	}
	return ids
}

func newMessage(id string) *message.Message {
	body, _ := json.Marshal(payload{ID: id}) // a struct of one string always encodes
	return message.NewMessage(id, body)
}

// publishResult is what the publishing side knows: which Publish calls returned nil.
type publishResult struct {
	mu     sync.Mutex
	ok     []string
	failed []string
	errs   map[string]int // error text (shortened) -> count, for the log
}

func (p *publishResult) okIDs() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.ok)
}

func (p *publishResult) failedCount() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.failed)
}

// publishAll publishes one message per Publish call, in order; before each call it runs
// before(i), which paces the stream or injects a fault.
func publishAll(pub message.Publisher, topic string, ids []string, before func(i int)) *publishResult {
	res := &publishResult{errs: map[string]int{}}
	for i, id := range ids {
		if before != nil {
			before(i)
		}
		err := pub.Publish(topic, newMessage(id))
		res.mu.Lock()
		if err != nil {
			res.failed = append(res.failed, id)
			res.errs[errorKind(err)]++
		} else {
			res.ok = append(res.ok, id)
		}
		res.mu.Unlock()
	}
	return res
}

// consumerOptions shape the in-process consumer.
type consumerOptions struct {
	// handle runs first in the handler; the id is recorded only when it returns nil.
	handle func(ctx context.Context, id string) error
	// middleware is the router-wide middleware, outermost first.
	middleware []message.HandlerMiddleware
	// brokerRetry makes a RocketMQ subscriber nack with a broker retry.
	brokerRetry bool
	// closeTimeout is the router's CloseTimeout (default 20 s).
	closeTimeout time.Duration
	// onSubscriber receives the subscriber the router creates.
	onSubscriber func(message.Subscriber)
}

// startConsumer runs a rocketbus router whose one handler, in group, records every id it
// finishes in the ledger at path. The router is closed when the test ends unless the test
// closed it first.
func startConsumer(t *testing.T, tg *target, topic, group, path string, o consumerOptions) *router.Router {
	t.Helper()
	led, err := openLedger(path)
	if err != nil {
		t.Fatal(err)
	}
	if o.closeTimeout == 0 {
		o.closeTimeout = 20 * time.Second
	}
	r, err := router.New(router.Config{
		// Every message of the suite decodes; one that did not would be dropped and then
		// counted as lost, failing the case, which is what it should do.
		DropUndecodable: true,
		NewSubscriber: func(group string) (message.Subscriber, error) {
			sub, err := tg.subscriber(t, group, o.brokerRetry)
			if err == nil && o.onSubscriber != nil {
				o.onSubscriber(sub)
			}
			return sub, err
		},
		Middleware:   o.middleware,
		CloseTimeout: o.closeTimeout,
		Logger:       wmLogger(),
	})
	if err != nil {
		t.Fatal(err)
	}
	err = router.Subscribe(r, topic, func(ctx context.Context, p *payload) error {
		if o.handle != nil {
			if err := o.handle(ctx, p.ID); err != nil {
				return err
			}
		}
		return led.add(p.ID)
	}, router.WithGroup(group), router.WithName("faults"))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- r.Run(context.Background()) }()
	select {
	case <-r.Running():
	case err := <-done:
		t.Fatalf("router stopped before running: %v", err)
	case <-time.After(60 * time.Second):
		t.Fatal("router not running after 60s")
	}
	t.Cleanup(func() {
		if err := r.Close(); err != nil {
			t.Errorf("closing router: %v", err)
		}
		if err := <-done; err != nil && !errors.Is(err, router.ErrClosed) {
			t.Errorf("router Run: %v", err)
		}
		_ = led.Close()
	})
	return r
}

func wmLogger() watermill.LoggerAdapter {
	if os.Getenv("FAULTS_LOG") != "" {
		return watermill.NewStdLogger(true, false)
	}
	return watermill.NopLogger{}
}

// waitHandled waits until every id in want is in the ledger (or in dead(), the ids in a
// poison or dead-letter queue), or until timeout. It does not fail: the caller reports what
// is missing.
func waitHandled(t *testing.T, path string, want func() []string, dead func() map[string]bool, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		got, err := readLedger(path)
		if err != nil {
			t.Fatal(err)
		}
		var d map[string]bool
		if dead != nil {
			d = dead()
		}
		missing := 0
		for _, id := range want() {
			if got[id] == 0 && !d[id] {
				missing++
			}
		}
		if missing == 0 || time.Now().After(deadline) {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// handledCount is the number of distinct ids in a ledger.
func handledCount(t *testing.T, path string) int {
	t.Helper()
	got, err := readLedger(path)
	if err != nil {
		t.Fatal(err)
	}
	return len(got)
}

// waitCount blocks until the ledger holds at least n distinct ids (or 60 s passed), which is
// how cases inject their fault mid-stream.
func waitCount(t *testing.T, path string, n int) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for handledCount(t, path) < n {
		if time.Now().After(deadline) {
			t.Fatalf("fewer than %d messages handled after 60s", n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// counts is one row of the results table.
type counts struct {
	Case, Backend string
	Published     int // Publish returned nil
	PublishFailed int // Publish returned an error
	Handled       int // published ids recorded by a handler that returned nil
	DeadLettered  int // published ids not handled but in the poison or dead-letter queue
	Lost          int // published ids neither handled nor dead-lettered
	Duplicated    int // extra handler completions beyond the first, over all ids
	Note          string
}

var results struct {
	mu   sync.Mutex
	rows []counts
}

func addRow(c counts) {
	results.mu.Lock()
	defer results.mu.Unlock()
	results.rows = append(results.rows, c)
}

// finish computes the row of a case from the ledger, logs and records it, and fails the test
// when a published message was lost.
func finish(t *testing.T, caseName, backend string, pub *publishResult, path string, dead map[string]bool, note string) counts {
	t.Helper()
	got, err := readLedger(path)
	if err != nil {
		t.Fatal(err)
	}
	c := counts{Case: caseName, Backend: backend, Published: len(pub.okIDs()), PublishFailed: pub.failedCount(), Note: note}
	var lost []string
	for _, id := range pub.okIDs() {
		switch n := got[id]; {
		case n > 0:
			c.Handled++
			c.Duplicated += n - 1
		case dead[id]:
			c.DeadLettered++
		default:
			lost = append(lost, id)
		}
	}
	c.Lost = len(lost)
	addRow(c)
	t.Logf("%s on %s: published %d (failed publishes %d), handled %d, dead-lettered %d, lost %d, duplicated %d %s",
		caseName, backend, c.Published, c.PublishFailed, c.Handled, c.DeadLettered, c.Lost, c.Duplicated, note)
	if len(pub.errs) > 0 {
		t.Logf("publish errors: %v", pub.errs)
	}
	if c.Published == 0 {
		t.Errorf("no Publish succeeded: the case proved nothing")
	}
	if c.Lost > 0 {
		t.Errorf("%d published messages were never handled, e.g. %v", c.Lost, lost[:min(len(lost), 10)])
	}
	return c
}

// skipCase records that a case does not apply to a backend, with the reason, and skips.
func skipCase(t *testing.T, caseName, backend, reason string) {
	t.Helper()
	addRow(counts{Case: caseName, Backend: backend, Published: -1, Note: "skipped: " + reason})
	t.Skip(reason)
}

func writeReport(path string) error {
	results.mu.Lock()
	rows := slices.Clone(results.rows)
	results.mu.Unlock()
	sort.SliceStable(rows, func(i, j int) bool { return rows[i].Case < rows[j].Case })
	var b strings.Builder
	b.WriteString("| case | backend | published | publish errors | handled | dead-lettered | lost | duplicated | note |\n")
	b.WriteString("|---|---|---:|---:|---:|---:|---:|---:|---|\n")
	for _, r := range rows {
		if r.Published < 0 {
			// The first clause of the skip reason; the test log has all of it.
			note := r.Note
			if i := strings.IndexAny(note, ";("); i > 0 {
				note = strings.TrimSpace(note[:i])
			}
			if i := strings.Index(note, ": when"); i > 0 {
				note = note[:i]
			}
			fmt.Fprintf(&b, "| %s | %s | - | - | - | - | - | - | %s |\n", r.Case, r.Backend, note)
			continue
		}
		fmt.Fprintf(&b, "| %s | %s | %d | %d | %d | %d | %d | %d | %s |\n", r.Case, r.Backend,
			r.Published, r.PublishFailed, r.Handled, r.DeadLettered, r.Lost, r.Duplicated, r.Note)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return os.WriteFile(path, []byte(b.String()), 0o644)
}

func itoa(n int) string { return fmt.Sprint(n) }

var idPattern = regexp.MustCompile(`faults-[0-9a-f]+|[0-9a-f]{12}-[0-9]{5}|127\.0\.0\.1:[0-9]+`)

// errorKind is an error's text without ids, topics and ports, so that equal failures group.
func errorKind(err error) string {
	text := idPattern.ReplaceAllString(err.Error(), "*")
	if len(text) > 160 {
		text = text[:160]
	}
	return text
}
