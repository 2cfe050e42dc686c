package testkit

import (
	"context"
	stdsql "database/sql"
	"net/url"
	"os"
	"sync"
	"testing"
	"time"

	wsql "github.com/ThreeDotsLabs/watermill-sql/v4/pkg/sql"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/pubsub/tests"
	_ "github.com/lib/pq" // registers the "postgres" database/sql driver
)

// DefaultPostgresDSN is the database used when POSTGRES_DSN is unset; scripts/test-services.sh
// creates its role and database.
const DefaultPostgresDSN = "postgres://rocketbus:rocketbus@127.0.0.1:5432/rocketbus?sslmode=disable"

// sqlPollInterval is how often an idle subscriber queries for new rows. The adapter's default
// (1s) would make every handoff wait up to a second; 10ms keeps latency low at the cost of a
// query per subscriber every 10ms while idle.
const sqlPollInterval = 10 * time.Millisecond

// PostgreSQL returns the PostgreSQL backend (watermill-sql/v4 over lib/pq) at $POSTGRES_DSN,
// default DefaultPostgresDSN. A topic is a messages table plus an offsets table, dropped when
// the test ends; payloads are stored as BYTEA so any payload works, not only JSON. Each
// consumer group keeps its own offset and starts at the first row, so it also gets messages
// published before it existed; a fan-out subscriber is a consumer group of its own.
func PostgreSQL(tb testing.TB) Backend {
	tb.Helper()
	dsn := os.Getenv("POSTGRES_DSN")
	if dsn == "" {
		dsn = DefaultPostgresDSN
	}
	db, err := stdsql.Open("postgres", dsn)
	if err != nil {
		tb.Fatalf("testkit: POSTGRES_DSN is not a valid PostgreSQL DSN: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := db.PingContext(ctx); err != nil {
		_ = db.Close()
		unavailable(tb, "PostgreSQL", redactDSN(dsn), err)
	}
	b := &sqlBackend{
		db: db,
		schema: wsql.DefaultPostgreSQLSchema{
			GeneratePayloadType: func(string) string { return "BYTEA" },
		},
		offsets: wsql.DefaultPostgreSQLOffsetsAdapter{},
	}
	tb.Cleanup(func() {
		// Runs after every publisher and subscriber of the test is closed (cleanups are LIFO).
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		b.mu.Lock()
		topics := b.topics
		b.mu.Unlock()
		for _, topic := range topics {
			for _, table := range []string{b.schema.MessagesTable(topic), b.offsets.MessagesOffsetsTable(topic)} {
				// Table names come from MessagesTable and are already quoted identifiers.
				if _, err := db.ExecContext(ctx, "DROP TABLE IF EXISTS "+table); err != nil {
					tb.Errorf("testkit: dropping %s: %v", table, err)
				}
			}
		}
		_ = db.Close()
	})
	return b
}

// redactDSN hides the password of a DSN in messages.
func redactDSN(dsn string) string {
	u, err := url.Parse(dsn)
	if err != nil || u.User == nil {
		return dsn
	}
	return u.Redacted()
}

type sqlBackend struct {
	db      *stdsql.DB
	schema  wsql.DefaultPostgreSQLSchema
	offsets wsql.DefaultPostgreSQLOffsetsAdapter

	mu     sync.Mutex
	topics []string
}

func (b *sqlBackend) Name() string { return "postgres" }

// Topic stays within 45 characters: PostgreSQL truncates identifiers to 63 bytes, and the
// longest table derived from a topic is "watermill_offsets_<topic>".
func (b *sqlBackend) Topic(tb testing.TB) string {
	topic := newTopicName(tb, 45)
	b.mu.Lock()
	b.topics = append(b.topics, topic)
	b.mu.Unlock()
	return topic // tables are created by the first publish or subscribe
}

func (b *sqlBackend) Publisher(tb testing.TB) message.Publisher {
	tb.Helper()
	pub, err := wsql.NewPublisher(wsql.BeginnerFromStdSQL(b.db), wsql.PublisherConfig{
		SchemaAdapter:        b.schema,
		AutoInitializeSchema: true,
	}, logger())
	if err != nil {
		tb.Fatalf("testkit: PostgreSQL publisher: %v", err)
	}
	closeOnCleanup(tb, "PostgreSQL publisher", pub)
	return pub
}

func (b *sqlBackend) Subscriber(tb testing.TB) message.Subscriber {
	// The adapter's subscribers without a group all share one offset, so they would compete;
	// a private group gives fan-out.
	return b.newSubscriber(tb, "fanout_"+randomID(16))
}

func (b *sqlBackend) GroupSubscriber(tb testing.TB, group string) message.Subscriber {
	if group == "" {
		tb.Fatal("testkit: GroupSubscriber needs a group name")
	}
	return b.newSubscriber(tb, group)
}

func (b *sqlBackend) newSubscriber(tb testing.TB, group string) message.Subscriber {
	tb.Helper()
	sub, err := wsql.NewSubscriber(wsql.BeginnerFromStdSQL(b.db), wsql.SubscriberConfig{
		ConsumerGroup:    group,
		PollInterval:     sqlPollInterval,
		SchemaAdapter:    b.schema,
		OffsetsAdapter:   b.offsets,
		InitializeSchema: true,
	}, logger())
	if err != nil {
		tb.Fatalf("testkit: PostgreSQL subscriber: %v", err)
	}
	closeOnCleanup(tb, "PostgreSQL subscriber", sub)
	return sub
}

func (b *sqlBackend) Features() tests.Features {
	return tests.Features{
		ConsumerGroups:                      true,
		ExactlyOnceDelivery:                 true,
		GuaranteedOrder:                     true,
		GuaranteedOrderWithSingleSubscriber: true,
		Persistent:                          true,
		NewSubscriberReceivesOldMessages:    true,
	}
}
