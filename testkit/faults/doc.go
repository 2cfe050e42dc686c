// Package faults is rocketbus's fault suite: it checks that at-least-once delivery holds when
// things break. Every case publishes messages with unique ids through the Watermill API,
// handles them with a rocketbus router handler that records each id in a file that outlives
// the consumer (appended and fsynced before the handler returns nil), injects a fault, and
// then checks the record: every message whose Publish returned nil was handled at least once
// (lost == 0), and nothing was acknowledged to the broker before its handler returned nil.
// Duplicates are counted and reported, never asserted away: at-least-once allows them.
//
// The faults: a broker restart mid-stream, a broker process killed with SIGKILL and started
// again from its data directory, a broker container restarted (`docker restart`), every
// connection dropped, the broker paused (unreachable) for a while, the consumer process killed
// with SIGKILL mid-handler, Close of the router and of the subscriber under load, handler
// panics and errors (Recoverer, Retry, PoisonQueue, RocketMQ's own retry to the dead-letter
// queue), and publishing while the broker is down. RocketMQ runs on minirmq, whose Server can
// restart, drop connections and pause, and as cmd/minirmq in a child process or in a container;
// NATS runs on an embedded nats-server restarted on the same port and store, or in a child
// process; the services make test starts (Redis, PostgreSQL, RabbitMQ) are shared with other
// tests and never restarted, so their connections are cut or refused through a TCP proxy the
// test owns, and the restart and SIGKILL cases run Redis and PostgreSQL on a private server
// that the case starts and stops itself. Every case that cannot apply to a backend says why in
// its skip reason.
//
// The package holds only tests. FAULTS_REPORT=path writes the table of the run (case x
// backend -> published / handled / lost / duplicated) to path; README.md shows the latest.
package faults
