package rmqcontainer

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
)

// Ports inside the container. The apache/rocketmq images run the name server on 9876 and the
// broker on 10911. 10909 is the broker's "VIP channel"; clients that enable it dial the
// advertised broker port minus 2, which a random host mapping does not preserve, so clients
// outside Docker must leave it off (the Go client never uses it, Java's default is off). It is
// published anyway for tools that target it explicitly.
const (
	nameServerPort = "9876/tcp"
	brokerPort     = "10911/tcp"
	brokerVIPPort  = "10909/tcp"
)

// Environment variables of the apache/rocketmq images and of the start script written here.
const (
	// envBrokerConf carries the broker.conf text into the container; the start script writes it
	// to a file the broker user can read, so no file has to be copied in before start.
	envBrokerConf = "ROCKETBUS_BROKER_CONF"
	// envMaxHeap is read by the images' runserver.sh and runbroker.sh (bytes): -Xms and -Xmx
	// take it, -Xmn half of it. Without it they size the heap from the container's memory.
	envMaxHeap = "MAX_POSSIBLE_HEAP"
	// envHeapOpts replaces the heap flags in the newer images' scripts (default 2g heap, 1g
	// direct memory).
	envHeapOpts = "HEAP_OPTS"
	// envJavaOptExt is appended last to the JVM options by the same scripts, so its heap flags
	// win even in images whose scripts ignore MAX_POSSIBLE_HEAP.
	envJavaOptExt = "JAVA_OPT_EXT"
)

// defaultBrokerConfig is a single-master broker that creates topics and groups on first use, as
// tests expect. User entries from WithBrokerConfig override these.
var defaultBrokerConfig = map[string]string{
	"brokerClusterName":           "DefaultCluster",
	"brokerName":                  "broker-a",
	"brokerId":                    "0",
	"brokerRole":                  "ASYNC_MASTER",
	"flushDiskType":               "ASYNC_FLUSH",
	"deleteWhen":                  "04",
	"fileReservedTime":            "48",
	"autoCreateTopicEnable":       "true",
	"autoCreateSubscriptionGroup": "true",
}

// apacheStartScript starts the name server and the broker. ROCKETMQ_HOME is set by the official
// images (/home/rocketmq/rocketmq-<version>); the glob is a fallback for images that lost it.
// The broker retries its registration, so it need not wait for the name server to listen.
// The images' scripts run java as a child of sh rather than exec it, so a stop signal sent to
// this shell (PID 1) would never reach the JVMs and Docker would wait out its stop timeout and
// kill them: the trap passes it on to the whole process group. The container lives as long as
// the broker.
const apacheStartScript = `set -e
home="${ROCKETMQ_HOME:-}"
if [ -z "$home" ]; then
  for d in /home/rocketmq/rocketmq-*; do home="$d"; done
fi
if [ ! -f "$home/bin/mqbroker" ]; then
  echo "rmqcontainer: cannot find bin/mqbroker under ROCKETMQ_HOME ($home)" >&2
  exit 1
fi
conf="${HOME:-/tmp}/rocketbus-broker.conf"
printf '%s' "$` + envBrokerConf + `" > "$conf"
cd "$home/bin"
set +e
trap 'trap "" TERM INT; kill -TERM 0 2>/dev/null; wait; exit 143' TERM INT
sh ./mqnamesrv &
sh ./mqbroker -n localhost:9876 -c "$conf" &
wait $!
`

// brokerConfigText merges the defaults with the user's entries and renders broker.conf.
func brokerConfigText(user map[string]string) string {
	merged := maps.Clone(defaultBrokerConfig)
	maps.Copy(merged, user)
	return propertiesText(merged)
}

// propertiesText renders key=value lines in a stable order (Java properties, as the broker reads
// its config file and the body of UPDATE_BROKER_CONFIG).
func propertiesText(props map[string]string) string {
	var b strings.Builder
	for _, k := range slices.Sorted(maps.Keys(props)) {
		b.WriteString(k)
		b.WriteByte('=')
		b.WriteString(props[k])
		b.WriteByte('\n')
	}
	return b.String()
}

// validateProperties rejects entries that cannot be expressed as one properties line.
func validateProperties(props map[string]string) error {
	for k, v := range props {
		if k == "" || strings.ContainsAny(k, "=:\n\r \t#!") {
			return fmt.Errorf("rmqcontainer: broker config key %q is not a valid property name", k)
		}
		if strings.ContainsAny(v, "\n\r") {
			return fmt.Errorf("rmqcontainer: broker config value for %q contains a line break", k)
		}
	}
	return nil
}

// parseHeap reads a JVM size such as "512m", "1g" or "268435456" and returns bytes.
func parseHeap(s string) (int64, error) {
	if s == "" {
		return 0, fmt.Errorf("rmqcontainer: JVM heap size is empty")
	}
	mult := int64(1)
	num := s
	switch s[len(s)-1] {
	case 'k', 'K':
		mult, num = 1<<10, s[:len(s)-1]
	case 'm', 'M':
		mult, num = 1<<20, s[:len(s)-1]
	case 'g', 'G':
		mult, num = 1<<30, s[:len(s)-1]
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("rmqcontainer: JVM heap size %q: want a positive number with an optional k, m or g suffix", s)
	}
	// The JVM refuses heaps below a few megabytes; catch typos like "64k" here with a clear error.
	if n*mult < 16<<20 {
		return 0, fmt.Errorf("rmqcontainer: JVM heap size %q is below 16m, too small for a broker", s)
	}
	if n > (1<<62)/mult {
		return 0, fmt.Errorf("rmqcontainer: JVM heap size %q is too large", s)
	}
	return n * mult, nil
}

// apacheEnv is the environment for the apache/rocketmq layout. Name server and broker both read
// the heap settings, so the container needs about twice the heap plus direct memory.
func apacheEnv(brokerConf string, heapBytes int64, jvmOptions []string) map[string]string {
	heapFlags := fmt.Sprintf("-Xms%d -Xmx%d -Xmn%d", heapBytes, heapBytes, heapBytes/2)
	javaOpts := append([]string{heapFlags}, jvmOptions...)
	return map[string]string{
		envBrokerConf: brokerConf,
		envMaxHeap:    strconv.FormatInt(heapBytes, 10),
		envHeapOpts:   fmt.Sprintf("%s -XX:MaxDirectMemorySize=%d", heapFlags, heapBytes),
		envJavaOptExt: strings.Join(javaOpts, " "),
		// Tools run inside the container (mqadmin) find the name server without -n.
		"NAMESRV_ADDR": "localhost:9876",
	}
}
