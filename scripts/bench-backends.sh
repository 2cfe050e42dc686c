#!/usr/bin/env bash
# bench-backends.sh runs testkit's BenchmarkPublishHandle (the same publish->handle workload on
# every backend) in one go test invocation and prints a Markdown table of messages handled per
# second, the median of COUNT runs per backend.
#
#   scripts/bench-backends.sh                 every backend, RocketMQ on minirmq
#   ROCKETMQ_NAMESRV=127.0.0.1:9876 scripts/bench-backends.sh   RocketMQ on that broker
#   TESTKIT_BACKENDS=rocketmq,nats scripts/bench-backends.sh    a subset
#
# COUNT (default 3) runs of OPS (default 30) operations of 100 messages each, so every backend
# handles the same number of messages. Start the services first (scripts/test-services.sh).
set -euo pipefail

cd "$(dirname "$0")/.."
COUNT=${COUNT:-3}
OPS=${OPS:-30}
out=$(mktemp)
trap 'rm -f "$out"' EXIT

go test -run '^$' -bench '^BenchmarkPublishHandle$' -benchtime "${OPS}x" -count "$COUNT" ./testkit/ | tee "$out" >&2

echo
echo "| backend | msgs/s (median of $COUNT) | runs |"
echo "|---|---:|---|"
# Lines look like: BenchmarkPublishHandle/nats-2  30  7626729 ns/op  13.43 MB/s  12927 msgs/s
awk '
	/^BenchmarkPublishHandle\// {
		name = $1
		sub(/^BenchmarkPublishHandle\//, "", name)
		sub(/-[0-9]+$/, "", name)
		for (i = 2; i < NF; i++) if ($(i + 1) == "msgs/s") v = $i
		if (!(name in n)) order[++k] = name
		vals[name, ++n[name]] = v
	}
	END {
		for (j = 1; j <= k; j++) {
			name = order[j]; c = n[name]
			# insertion sort of this backend'"'"'s values
			for (a = 1; a <= c; a++) s[a] = vals[name, a] + 0
			for (a = 2; a <= c; a++) { x = s[a]; b = a - 1; while (b >= 1 && s[b] > x) { s[b + 1] = s[b]; b-- } s[b + 1] = x }
			med = (c % 2) ? s[(c + 1) / 2] : (s[c / 2] + s[c / 2 + 1]) / 2
			runs = ""
			for (a = 1; a <= c; a++) runs = runs (a > 1 ? ", " : "") sprintf("%.0f", vals[name, a])
			printf "| %s | %.0f | %s |\n", name, med, runs
		}
	}' "$out"
