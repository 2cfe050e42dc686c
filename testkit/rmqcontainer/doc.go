// Package rmqcontainer runs Apache RocketMQ in a container with testcontainers-go, for
// integration tests that want a real broker without installing one.
//
// The trap it removes: a broker in Docker registers its container address (172.17.x.x:10911)
// with the name server, so clients on the host get routes they cannot reach. After the
// container is ready, Run sends the broker an UPDATE_BROKER_CONFIG request setting brokerIP1
// and listenPort to the host side of the port mapping (with brokerPermission, which makes the
// broker re-register at once), and waits until the name server's cluster info carries that
// address.
//
// Two image layouts are supported, detected from the image or set with WithLayout:
//
//   - apache/rocketmq 4.9.x and 5.x images: one container runs mqnamesrv (9876) and mqbroker
//     (10911, plus 10909) with a broker.conf built from this package's defaults and
//     WithBrokerConfig, a heap set by WithJVMHeap (512m each by default) and extra JVM flags
//     from WithJVMOptions.
//   - single-port images such as cmd/minirmq (FROM scratch; MinirmqImage builds it locally):
//     name server and broker share 9876.
//
// In tests, RunTest starts a container (the image named by $ROCKETMQ_IMAGE, else the local
// minirmq image), terminates it in t.Cleanup, and skips when no Docker engine answers (fails
// when CI=true).
//
// Restart restarts the container (`docker restart`), waits for the broker and advertises its
// address again if the broker forgot it. Docker publishes a restarted container on new host
// ports, which clients holding the old name server address cannot follow: fix the ports with
// WithHostPort for a container restarted under running clients.
//
// Mapped ports bind to 127.0.0.1 when the Docker engine runs on this machine. Where the
// testcontainers reaper (Ryuk) image cannot be pulled, set TESTCONTAINERS_RYUK_DISABLED=true
// (before the first container, e.g. in TestMain) and terminate every container. Every container
// carries the label Label, so `docker ps -a --filter label=org.rocketbus.rmqcontainer` finds
// leftovers.
package rmqcontainer
