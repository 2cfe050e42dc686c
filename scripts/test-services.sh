#!/usr/bin/env bash
# test-services.sh starts the servers the testkit backend matrix talks to: Redis (streams),
# PostgreSQL (watermill-sql) and RabbitMQ (watermill-amqp). NATS runs inside the test process
# and RocketMQ comes from minirmq, so neither needs anything here.
#
#   scripts/test-services.sh          install (Debian packages) and start what is missing
#   scripts/test-services.sh stop     stop only the daemons this script started earlier
#   scripts/test-services.sh status   report which services answer
#
# It is idempotent and safe while the services already run: a service that answers is left
# alone, and nothing is ever stopped unless this script started it (recorded in $STATE_DIR).
# Daemons are started directly, without systemd, so it works in containers and CI runners.
# Installing and starting PostgreSQL and RabbitMQ need root, or passwordless sudo.
#
# A service whose address variable is set (REDIS_ADDR, POSTGRES_DSN, AMQP_URI) is treated as
# external: the script only waits for it to answer. Unset variables mean the defaults the Go
# tests use, which this script provides on localhost.
#
# SKIP_SERVICES=1 skips everything (exit 0). SERVICES_WAIT_SECONDS bounds each wait (default 120).
set -euo pipefail

if [ "${SKIP_SERVICES:-}" = "1" ]; then
	echo "test-services: SKIP_SERVICES=1, not starting anything"
	exit 0
fi

STATE_DIR=${ROCKETBUS_SERVICES_DIR:-/tmp/rocketbus-services}
WAIT_SECONDS=${SERVICES_WAIT_SECONDS:-120}

# These defaults must match the ones in testkit (redis.go, sql.go, amqp.go).
DEFAULT_REDIS_ADDR=127.0.0.1:6379
DEFAULT_PG_USER=rocketbus
DEFAULT_PG_PASSWORD=rocketbus
DEFAULT_PG_DB=rocketbus
DEFAULT_PG_PORT=5432
DEFAULT_AMQP_URI=amqp://guest:guest@127.0.0.1:5672/
# A fixed node name avoids depending on the machine's hostname resolving, which it often does
# not in containers; rabbitmqctl must use the same name, hence the export.
export RABBITMQ_NODENAME=${RABBITMQ_NODENAME:-rabbit@localhost}

SUMMARY=()
APT_UPDATED=0

log() { echo "test-services: $*"; }
die() {
	echo "test-services: ERROR: $*" >&2
	exit 1
}
summary() { SUMMARY+=("$(printf '%-10s %-45s %s' "$1" "$2" "$3")"); }

is_root() { [ "$(id -u)" = "0" ]; }

# can_root and as_root let the script work as root (containers) or through passwordless sudo
# (CI runners such as GitHub's); anything else gets a clear error where root is needed.
can_root() { is_root || sudo -n true 2>/dev/null; }
as_root() {
	if is_root; then
		"$@"
	else
		sudo -n "$@"
	fi
}

# install_pkgs installs Debian packages unless the given command already exists.
install_pkgs() {
	local cmd=$1
	shift
	if command -v "$cmd" >/dev/null 2>&1; then
		return 0
	fi
	apt_install "$cmd is missing" "$@"
	command -v "$cmd" >/dev/null 2>&1 || die "installed $* but $cmd is still not on PATH"
}

apt_install() { # reason pkgs...
	local why=$1
	shift
	can_root || die "$why and installing $* needs root or passwordless sudo (install them yourself, or set SKIP_SERVICES=1)"
	command -v apt-get >/dev/null 2>&1 || die "$why and apt-get is not available to install $*"
	if [ "$APT_UPDATED" = 0 ]; then
		log "apt-get update"
		as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null || die "apt-get update failed"
		APT_UPDATED=1
	fi
	log "installing $*"
	as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null ||
		die "apt-get install $* failed"
}

# wait_for polls a probe function until it succeeds or WAIT_SECONDS pass.
wait_for() {
	local what=$1 logfile=$2
	shift 2
	local deadline=$((SECONDS + WAIT_SECONDS))
	until "$@"; do
		if [ $SECONDS -ge $deadline ]; then
			if [ -n "$logfile" ] && [ -r "$logfile" ]; then
				echo "--- last lines of $logfile ---" >&2
				tail -n 30 "$logfile" >&2 || true
			fi
			die "$what did not answer within ${WAIT_SECONDS}s"
		fi
		sleep 1
	done
}

split_hostport() { # host:port -> sets HOST PORT
	HOST=${1%:*}
	PORT=${1##*:}
}

is_local() { [ "$1" = "127.0.0.1" ] || [ "$1" = "localhost" ]; }

record_started() { echo "$2" >"$STATE_DIR/$1.started"; }

# ---------- Redis ----------

redis_ping() { # host port: true when a Redis server answers PING with PONG
	local reply
	reply=$(timeout 3 bash -c 'exec 3<>/dev/tcp/"$0"/"$1" && printf "PING\r\n" >&3 && head -c 5 <&3' "$1" "$2" 2>/dev/null) || return 1
	[ "$reply" = "+PONG" ]
}

start_redis() {
	local addr=${REDIS_ADDR:-$DEFAULT_REDIS_ADDR}
	split_hostport "$addr"
	if redis_ping "$HOST" "$PORT"; then
		summary redis "$addr" "already running"
		return
	fi
	if [ -n "${REDIS_ADDR:-}" ] && ! is_local "$HOST"; then
		log "waiting for external Redis at $addr"
		wait_for "Redis at $addr" "" redis_ping "$HOST" "$PORT"
		summary redis "$addr" "external, answering"
		return
	fi
	install_pkgs redis-server redis-server
	if redis_ping "$HOST" "$PORT"; then # the package's init script may have started one
		summary redis "$addr" "running (started by the package install)"
		return
	fi
	local pidfile=$STATE_DIR/redis.pid logfile=$STATE_DIR/redis.log
	mkdir -p "$STATE_DIR/redis-data"
	# No persistence: test data is disposable and snapshots would only cost I/O.
	redis-server --daemonize yes --bind "$HOST" --port "$PORT" --save '' --appendonly no \
		--dir "$STATE_DIR/redis-data" --pidfile "$pidfile" --logfile "$logfile" ||
		die "redis-server failed to start (see $logfile)"
	wait_for "Redis at $addr" "$logfile" redis_ping "$HOST" "$PORT"
	record_started redis "pid $(cat "$pidfile" 2>/dev/null || echo '?')"
	summary redis "$addr" "started (pid $(cat "$pidfile" 2>/dev/null || echo '?'), log $logfile)"
}

stop_redis() {
	[ -f "$STATE_DIR/redis.started" ] || return 0
	local pid
	pid=$(cat "$STATE_DIR/redis.pid" 2>/dev/null || true)
	# Only signal the PID if it still is the redis-server we started (PIDs get reused).
	if [ -n "$pid" ] && grep -q redis-server "/proc/$pid/cmdline" 2>/dev/null; then
		kill "$pid" || die "cannot signal redis-server (pid $pid)"
		# Wait for the exit, so that a start right after this stop does not find it still
		# answering. A zombie (state Z) has exited; only its parent can reap it.
		local deadline=$((SECONDS + WAIT_SECONDS))
		while [ -e "/proc/$pid" ] && [ "$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" != "Z" ]; do
			[ $SECONDS -lt $deadline ] || die "redis-server (pid $pid) did not exit within ${WAIT_SECONDS}s"
			sleep 0.2
		done
		log "stopped redis-server (pid $pid)"
	fi
	rm -f "$STATE_DIR/redis.started"
}

# ---------- PostgreSQL ----------

pg_dsn_ok() { psql "$1" -qtAc 'select 1' >/dev/null 2>&1; }

local_pg_dsn() {
	echo "postgres://$DEFAULT_PG_USER:$DEFAULT_PG_PASSWORD@127.0.0.1:$1/$DEFAULT_PG_DB?sslmode=disable"
}

# pg_cluster picks the Debian cluster to run: the first one listed by pg_lsclusters, or a new
# "main" cluster of the newest installed version. Sets PG_VER PG_NAME PG_PORT PG_STATUS.
pg_cluster() {
	local line
	line=$(pg_lsclusters -h 2>/dev/null | head -n 1 || true)
	if [ -z "$line" ]; then
		local ver
		ver=$(ls /usr/lib/postgresql 2>/dev/null | sort -n | tail -n 1)
		[ -n "$ver" ] || die "no PostgreSQL server version found under /usr/lib/postgresql"
		log "creating PostgreSQL cluster $ver/main"
		as_root pg_createcluster "$ver" main --port "$DEFAULT_PG_PORT" >/dev/null || die "pg_createcluster $ver main failed"
		line=$(pg_lsclusters -h | head -n 1)
	fi
	read -r PG_VER PG_NAME PG_PORT PG_STATUS _ <<<"$line"
}

pg_local_ready() { pg_isready -q -h 127.0.0.1 -p "$1"; }

pg_superuser_sql() { # port sql...
	local port=$1
	shift
	as_root runuser -u postgres -- psql -X -q -v ON_ERROR_STOP=1 -p "$port" -d postgres "$@"
}

start_postgres() {
	if [ -n "${POSTGRES_DSN:-}" ]; then
		if ! pg_dsn_ok "$POSTGRES_DSN"; then
			command -v psql >/dev/null 2>&1 || install_pkgs psql postgresql-client
			log "waiting for external PostgreSQL at POSTGRES_DSN"
			wait_for "PostgreSQL at \$POSTGRES_DSN" "" pg_dsn_ok "$POSTGRES_DSN"
		fi
		summary postgres "\$POSTGRES_DSN" "external, answering"
		return
	fi
	if command -v psql >/dev/null 2>&1 && pg_dsn_ok "$(local_pg_dsn "$DEFAULT_PG_PORT")"; then
		summary postgres "127.0.0.1:$DEFAULT_PG_PORT/$DEFAULT_PG_DB" "already running"
		return
	fi
	install_pkgs pg_ctlcluster postgresql
	if ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then
		apt_install "no PostgreSQL server is installed" postgresql
	fi
	pg_cluster
	local started=""
	if ! pg_local_ready "$PG_PORT"; then
		can_root || die "PostgreSQL cluster $PG_VER/$PG_NAME is down and starting it needs root or passwordless sudo"
		log "starting PostgreSQL cluster $PG_VER/$PG_NAME on port $PG_PORT"
		as_root pg_ctlcluster "$PG_VER" "$PG_NAME" start || die "pg_ctlcluster $PG_VER $PG_NAME start failed"
		started=yes
	fi
	wait_for "PostgreSQL on 127.0.0.1:$PG_PORT" "/var/log/postgresql/postgresql-$PG_VER-$PG_NAME.log" pg_local_ready "$PG_PORT"
	if [ -n "$started" ]; then
		record_started postgres "$PG_VER $PG_NAME"
	fi
	can_root || die "creating the PostgreSQL role $DEFAULT_PG_USER needs root or passwordless sudo (to act as the postgres user)"
	# Role and database for the tests; re-running keeps them and resets the password.
	pg_superuser_sql "$PG_PORT" <<SQL || die "creating PostgreSQL role/database $DEFAULT_PG_USER failed"
DO \$\$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$DEFAULT_PG_USER') THEN
    CREATE ROLE $DEFAULT_PG_USER LOGIN;
  END IF;
END \$\$;
ALTER ROLE $DEFAULT_PG_USER LOGIN PASSWORD '$DEFAULT_PG_PASSWORD';
SELECT 'CREATE DATABASE $DEFAULT_PG_DB OWNER $DEFAULT_PG_USER'
  WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = '$DEFAULT_PG_DB')\gexec
SQL
	local dsn
	dsn=$(local_pg_dsn "$PG_PORT")
	wait_for "PostgreSQL login as $DEFAULT_PG_USER" "" pg_dsn_ok "$dsn"
	if [ "$PG_PORT" != "$DEFAULT_PG_PORT" ]; then
		log "PostgreSQL listens on $PG_PORT, not $DEFAULT_PG_PORT: export POSTGRES_DSN='$dsn'"
	fi
	if [ -n "$started" ]; then
		summary postgres "127.0.0.1:$PG_PORT/$DEFAULT_PG_DB" "started (cluster $PG_VER/$PG_NAME)"
	else
		summary postgres "127.0.0.1:$PG_PORT/$DEFAULT_PG_DB" "already running (role and database ensured)"
	fi
}

stop_postgres() {
	[ -f "$STATE_DIR/postgres.started" ] || return 0
	local ver name
	read -r ver name <"$STATE_DIR/postgres.started"
	as_root pg_ctlcluster "$ver" "$name" stop && log "stopped PostgreSQL cluster $ver/$name"
	rm -f "$STATE_DIR/postgres.started"
}

# ---------- RabbitMQ ----------

amqp_hostport() { # amqp://user:pass@host:port/vhost -> host:port
	local rest=${1#*://}
	rest=${rest#*@}
	rest=${rest%%/*}
	case $rest in
	*:*) echo "$rest" ;;
	*) echo "$rest:5672" ;;
	esac
}

amqp_ping() { # host port: true when an AMQP 0-9-1 server answers the protocol header
	local reply
	# The server answers the protocol header with a Connection.Start method frame (type 1).
	reply=$(timeout 5 bash -c 'exec 3<>/dev/tcp/"$0"/"$1" && printf "AMQP\0\0\x09\x01" >&3 && head -c 1 <&3 | od -An -tx1' "$1" "$2" 2>/dev/null) || return 1
	[ "$(echo "$reply" | tr -d ' ')" = "01" ]
}

start_rabbitmq() {
	local uri=${AMQP_URI:-$DEFAULT_AMQP_URI}
	local addr
	addr=$(amqp_hostport "$uri")
	split_hostport "$addr"
	if amqp_ping "$HOST" "$PORT"; then
		summary rabbitmq "$addr" "already running"
		return
	fi
	if [ -n "${AMQP_URI:-}" ] && ! is_local "$HOST"; then
		log "waiting for external RabbitMQ at $addr"
		wait_for "RabbitMQ at $addr" "" amqp_ping "$HOST" "$PORT"
		summary rabbitmq "$addr" "external, answering"
		return
	fi
	install_pkgs rabbitmq-server rabbitmq-server
	if amqp_ping "$HOST" "$PORT"; then # the package's service may have started one
		summary rabbitmq "$addr" "running (started by the package install)"
		return
	fi
	can_root || die "starting rabbitmq-server needs root or passwordless sudo"
	local logfile=$STATE_DIR/rabbitmq.log
	log "starting rabbitmq-server (node $RABBITMQ_NODENAME, port $PORT)"
	# The Debian wrapper runs the broker as the rabbitmq user; -detached returns at once.
	as_root env RABBITMQ_NODENAME="$RABBITMQ_NODENAME" RABBITMQ_NODE_PORT="$PORT" RABBITMQ_NODE_IP_ADDRESS="$HOST" \
		rabbitmq-server -detached >"$logfile" 2>&1 ||
		die "rabbitmq-server -detached failed (see $logfile)"
	wait_for "RabbitMQ at $addr" "/var/log/rabbitmq/$RABBITMQ_NODENAME.log" amqp_ping "$HOST" "$PORT"
	record_started rabbitmq "$RABBITMQ_NODENAME"
	summary rabbitmq "$addr" "started (node $RABBITMQ_NODENAME, logs /var/log/rabbitmq)"
}

stop_rabbitmq() {
	[ -f "$STATE_DIR/rabbitmq.started" ] || return 0
	local node
	node=$(cat "$STATE_DIR/rabbitmq.started")
	as_root env RABBITMQ_NODENAME="$node" rabbitmqctl -q stop && log "stopped RabbitMQ node $node"
	rm -f "$STATE_DIR/rabbitmq.started"
}

# ---------- main ----------

status() {
	local addr
	addr=${REDIS_ADDR:-$DEFAULT_REDIS_ADDR}
	split_hostport "$addr"
	redis_ping "$HOST" "$PORT" && echo "redis     $addr up" || echo "redis     $addr DOWN"
	local dsn=${POSTGRES_DSN:-$(local_pg_dsn "$DEFAULT_PG_PORT")}
	pg_dsn_ok "$dsn" && echo "postgres  ${POSTGRES_DSN:+\$POSTGRES_DSN}${POSTGRES_DSN:-127.0.0.1:$DEFAULT_PG_PORT} up" ||
		echo "postgres  ${POSTGRES_DSN:+\$POSTGRES_DSN}${POSTGRES_DSN:-127.0.0.1:$DEFAULT_PG_PORT} DOWN"
	addr=$(amqp_hostport "${AMQP_URI:-$DEFAULT_AMQP_URI}")
	split_hostport "$addr"
	amqp_ping "$HOST" "$PORT" && echo "rabbitmq  $addr up" || echo "rabbitmq  $addr DOWN"
}

mkdir -p "$STATE_DIR"
case ${1:-start} in
start)
	start_redis
	start_postgres
	start_rabbitmq
	echo "test-services: ready"
	printf '  %s\n' "${SUMMARY[@]}"
	;;
stop)
	stop_rabbitmq
	stop_postgres
	stop_redis
	;;
status) status ;;
*) die "unknown command $1 (want start, stop or status)" ;;
esac
