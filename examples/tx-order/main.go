// Command tx-order keeps a database write and a message in step with a RocketMQ transactional
// message: the order row is written and the "order created" event is published together, or
// neither is. The message is first stored as a half message that no subscriber sees; the local
// transaction (the SQL INSERT) runs; then the message is committed or rolled back. When the
// service dies between its database commit and telling the broker, the broker asks back
// (check-back) and the answer comes from the database: the event is delivered exactly when the
// row exists.
//
// The embedded broker checks back after 600 ms (a real broker: after 6 s, then every 60 s).
//
//	go run ./examples/tx-order
//	go run ./examples/tx-order -namesrv 127.0.0.1:9876
package main

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/apache/rocketmq-client-go/v2/rlog"
	_ "modernc.org/sqlite"

	"github.com/rocketbus/rocketbus/examples/internal/env"
	"github.com/rocketbus/rocketbus/rocketmq"
	"github.com/rocketbus/rocketbus/router"
	"github.com/rocketbus/rocketbus/testkit/minirmq"
)

// OrderCreated is published when an order row is committed.
type OrderCreated struct {
	ID    string `json:"id"`
	Total int    `json:"total"`
}

// fate is what happens to an order while it is being created.
type fate int

const (
	ok            fate = iota // INSERT commits, the message is committed
	outOfStock                // the local transaction fails: rollback, no message
	crashAfterDB              // INSERT commits, the process dies before the commit reaches the broker
	crashBeforeDB             // the process dies in the middle of the local transaction
)

var scenario = []struct {
	order OrderCreated
	fate  fate
}{
	{OrderCreated{ID: "o-1", Total: 1999}, ok},
	{OrderCreated{ID: "o-2", Total: 4999}, outOfStock},
	{OrderCreated{ID: "o-3", Total: 2500}, crashAfterDB},
	{OrderCreated{ID: "o-4", Total: 800}, crashBeforeDB},
}

// errCrash stands for the process dying.
var errCrash = errors.New("simulated crash")

func main() {
	if err := run(context.Background(), os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "tx-order:", err)
		os.Exit(1)
	}
}

// orderStore is the service's database.
type orderStore struct{ db *sql.DB }

func openStore() (*orderStore, error) {
	db, err := sql.Open("sqlite", "file::memory:")
	if err != nil {
		return nil, err
	}
	db.SetMaxOpenConns(1) // one in-memory database lives in one connection
	if _, err := db.Exec(`CREATE TABLE orders (id TEXT PRIMARY KEY, total INTEGER NOT NULL)`); err != nil {
		_ = db.Close()
		return nil, err
	}
	return &orderStore{db: db}, nil
}

// create runs the local transaction of order o: insert the row, and commit unless the fate
// says otherwise.
func (s *orderStore) create(o OrderCreated, f fate) error {
	tx, err := s.db.Begin()
	if err != nil {
		return err
	}
	defer tx.Rollback() //nolint:errcheck // after Commit it is a no-op
	if _, err := tx.Exec(`INSERT INTO orders (id, total) VALUES (?, ?)`, o.ID, o.Total); err != nil {
		return err
	}
	switch f {
	case outOfStock:
		return errors.New("out of stock")
	case crashBeforeDB:
		return errCrash // the database never commits a transaction of a dead process
	}
	return tx.Commit()
}

func (s *orderStore) exists(id string) (bool, error) {
	var n int
	err := s.db.QueryRow(`SELECT COUNT(*) FROM orders WHERE id = ?`, id).Scan(&n)
	return n > 0, err
}

func (s *orderStore) ids() ([]string, error) {
	rows, err := s.db.Query(`SELECT id FROM orders ORDER BY id`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, err
		}
		ids = append(ids, id)
	}
	return ids, rows.Err()
}

// tracker records what the scenario waits for.
type tracker struct {
	mu        sync.Mutex
	delivered map[string]int
	checked   map[string]rocketmq.TransactionState
	changed   chan struct{}
}

func (t *tracker) update(f func()) {
	t.mu.Lock()
	f()
	t.mu.Unlock()
	select {
	case t.changed <- struct{}{}:
	default:
	}
}

func run(ctx context.Context, args []string, stdout io.Writer) error {
	var f env.Flags
	if err := env.NewFlagSet("tx-order", stdout, &f).Parse(args); err != nil {
		return err
	}
	// rocketmq-client-go logs every local transaction that does not commit at error level
	// ("executeLocalTransaction but state unexpected"); here rollbacks and unknown outcomes
	// are the point, and failures reach run's error anyway.
	rlog.SetLogLevel("fatal")
	// Check-backs at a tenth of a real broker's times: fast enough for a demo, and far enough
	// behind END_TRANSACTION (sent a few milliseconds after each half message) that a
	// transaction the service did decide is never asked about.
	session, err := env.Open(ctx, f, stdout, minirmq.WithTimeScale(0.1))
	if err != nil {
		return err
	}
	defer session.Close()
	ctx, out, broker := session.Ctx, session.Out, session.Broker
	topic := f.Name("order_created")

	store, err := openStore()
	if err != nil {
		return err
	}
	defer store.db.Close()
	codec := router.JSON()
	tr := &tracker{delivered: map[string]int{}, checked: map[string]rocketmq.TransactionState{}, changed: make(chan struct{}, 1)}

	pub, err := rocketmq.NewTransactionalPublisher(rocketmq.TransactionalPublisherConfig{
		PublisherConfig: rocketmq.PublisherConfig{NameServers: broker.NameServers, GroupName: f.Name("tx_order_producer")},
		// The broker's question "did this transaction commit?" is answered by the database.
		// (A service whose local transactions can run long would answer TransactionUnknown
		// while one may still be in progress.)
		CheckLocalTransaction: func(msg *message.Message) rocketmq.TransactionState {
			var o OrderCreated
			if err := codec.Unmarshal(msg.Payload, &o); err != nil {
				return rocketmq.TransactionRollback // not an order this service would publish
			}
			found, err := store.exists(o.ID)
			state := rocketmq.TransactionRollback
			switch {
			case err != nil:
				state = rocketmq.TransactionUnknown // ask again later
			case found:
				state = rocketmq.TransactionCommit
			}
			out.Printf("check-back: order %s row exists=%t -> %s", o.ID, found, state)
			tr.update(func() { tr.checked[o.ID] = state })
			return state
		},
	}, watermill.NopLogger{})
	if err != nil {
		return err
	}
	defer pub.Close()

	// Undecodable events go to the poison topic through an ordinary producer: a transactional
	// one would make each of them a transaction.
	poison, err := broker.NewPublisher()
	if err != nil {
		return err
	}
	defer poison.Close()

	// Shipping consumes the committed events.
	r, err := router.New(router.Config{
		Publisher:     poison,
		NewSubscriber: broker.Subscribers(),
	})
	if err != nil {
		return err
	}
	err = router.Subscribe(r, topic, func(ctx context.Context, o *OrderCreated) error {
		out.Printf("shipping: received order %s (total %d)", o.ID, o.Total)
		tr.update(func() { tr.delivered[o.ID]++ })
		return nil
	}, router.WithGroup(f.Name("shipping")))
	if err != nil {
		return err
	}
	running, err := env.Start(ctx, r)
	if err != nil {
		return err
	}

	for _, s := range scenario {
		msg, err := router.NewMessage(ctx, codec, s.order, router.WithMetadata(rocketmq.MetadataKeys, s.order.ID))
		if err != nil {
			return err
		}
		state, err := pub.PublishInTransaction(topic, msg, func(*message.Message) rocketmq.TransactionState {
			err := store.create(s.order, s.fate)
			switch {
			case errors.Is(err, errCrash) || err == nil && s.fate == crashAfterDB:
				// A dead process tells the broker nothing; TransactionUnknown is exactly that.
				out.Printf("order %s: process crashed %s the database commit", s.order.ID, map[bool]string{true: "before", false: "after"}[err != nil])
				return rocketmq.TransactionUnknown
			case err != nil:
				out.Printf("order %s: local transaction failed (%v)", s.order.ID, err)
				return rocketmq.TransactionRollback
			}
			out.Printf("order %s: row committed", s.order.ID)
			return rocketmq.TransactionCommit
		})
		if err != nil && !errors.Is(err, rocketmq.ErrTransactionRolledBack) {
			return err
		}
		out.Printf("order %s: message %s", s.order.ID, state)
	}
	if broker.Embedded == nil {
		out.Printf("waiting for the broker to check back on o-3 and o-4 (a real broker does after 6 s, then every 60 s)")
	}

	// Done when both unknown outcomes were resolved by a check-back and every message that
	// can arrive did.
	done := func() bool {
		tr.mu.Lock()
		defer tr.mu.Unlock()
		_, c3 := tr.checked["o-3"]
		_, c4 := tr.checked["o-4"]
		return c3 && c4 && tr.delivered["o-1"] > 0 && tr.delivered["o-3"] > 0 &&
			(broker.Embedded == nil || broker.Embedded.PendingTransactions() == 0)
	}
	var waitErr error
	for !done() && waitErr == nil {
		select {
		case <-tr.changed:
		case <-time.After(50 * time.Millisecond): // PendingTransactions changes without a callback
		case <-running.Done():
			return running.Stop(fmt.Errorf("router stopped early: %w", running.Err()))
		case <-ctx.Done():
			waitErr = fmt.Errorf("transactions not resolved: %w", ctx.Err())
		}
	}
	if err := running.Stop(waitErr); err != nil {
		return err
	}

	rows, err := store.ids()
	if err != nil {
		return err
	}
	tr.mu.Lock()
	var delivered []string
	for id := range tr.delivered {
		delivered = append(delivered, id)
	}
	tr.mu.Unlock()
	sort.Strings(delivered)
	verdict := "consistent"
	if !slices.Equal(rows, delivered) {
		verdict = "INCONSISTENT"
	}
	out.Printf("%s: orders in the database %v, orders delivered %v", verdict, rows, delivered)
	if verdict != "consistent" {
		return errors.New("database and messages disagree")
	}
	return nil
}
