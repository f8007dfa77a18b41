#!/usr/bin/env bash
# bench/vs-etcd.sh: cairn against etcd on this machine, the same workloads
# through the same load generator (internal/loadgen), one table at the end.
#
# For each system in turn (never both at once) it starts a 3-member cluster on
# 127.0.0.1 with fsync on (each system's default; etcd's --unsafe-no-fsync is
# never used), runs
#
#   put-c1       puts, 1 client                      (1 connection)
#   put-c16      puts, 16 clients                    (8 connections)
#   put-c256     puts, 256 clients                   (8 connections)
#   get-lin-c64  linearizable gets, 64 clients       (8 connections; preloads every key first)
#   get-ser-c64  serializable gets, 64 clients       (8 connections)
#
# over KEYS keys with VALUE_SIZE-byte values, each for WARMUP then DURATION,
# reading the servers' CPU time from /proc before and after, stops the
# cluster, and finally prints throughput, p50, p99 and server CPU seconds per
# 1,000 operations for each system, with the ratios cairn/etcd.
#
# The cairn side is behind the CAIRN HOOKS below: it builds cmd/cairn, starts
# three `cairn server` processes and drives them with `cairn bench`.
#
# Usage: bash bench/vs-etcd.sh     (from anywhere; needs Go; installs etcd)
#
# Environment (all optional):
#   DURATION=15s WARMUP=3s KEYS=10000 VALUE_SIZE=256 MAX_CONNS=8
#   OP_TIMEOUT=10s
#   ETCD_SOURCE=build   build: etcd v3.7.x from bench/etcdserver (Go modules, the default)
#                       apt:   Debian's etcd-server package (3.4.23 on Debian 12)
#   ETCD_BIN=path       use this etcd binary and install nothing
#   ETCD_LEADER_ONLY=1  send etcd's requests to the leader's endpoint only (found
#                       at the start of each workload) instead of letting etcd's
#                       client balance them over all three members
#   SKIP_ETCD=1 / SKIP_CAIRN=1   leave a system out
#   OUT=dir             results (one JSON per workload and system), logs and the
#                       table are kept here (default: $TMPDIR/cairn-vs-etcd-<time>)
#   DATA_PARENT=dir     where the members' data dirs go, removed at exit; it must
#                       be a real disk, not tmpfs, or fsync costs nothing
#                       (default: $TMPDIR)
#   ETCD_PORT_BASE=32379 CAIRN_PORT_BASE=33379   three consecutive pairs of
#                       ports each: member i listens on BASE+2(i-1) for
#                       clients and on the port after it for peers
#   KEEP_DATA=1         keep the data dirs
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
if ! command -v go >/dev/null 2>&1; then
	export PATH=/usr/local/go/bin:$PATH
fi

DURATION=${DURATION:-15s}
WARMUP=${WARMUP:-3s}
KEYS=${KEYS:-10000}
VALUE_SIZE=${VALUE_SIZE:-256}
MAX_CONNS=${MAX_CONNS:-8}
OP_TIMEOUT=${OP_TIMEOUT:-10s}
ETCD_SOURCE=${ETCD_SOURCE:-build}
ETCD_PORT_BASE=${ETCD_PORT_BASE:-32379}
CAIRN_PORT_BASE=${CAIRN_PORT_BASE:-33379}
TMPDIR=${TMPDIR:-/tmp}
OUT=${OUT:-$TMPDIR/cairn-vs-etcd-$(date +%Y%m%d-%H%M%S)}
DATA_PARENT=${DATA_PARENT:-$TMPDIR}

# name, then the flags that make the workload (conns are added from MAX_CONNS).
WORKLOADS=(
	"put-c1 --clients 1 --read-fraction 0"
	"put-c16 --clients 16 --read-fraction 0"
	"put-c256 --clients 256 --read-fraction 0"
	"get-lin-c64 --clients 64 --read-fraction 1 --read-level linearizable --preload"
	"get-ser-c64 --clients 64 --read-fraction 1 --read-level serializable"
)

log() { printf '==> %s\n' "$*" >&2; }
die() {
	printf 'vs-etcd: %s\n' "$*" >&2
	exit 1
}

# --- processes and cleanup ------------------------------------------------
# Every server this script starts is recorded in PIDS and ended, by PID, on
# any exit: normal, error, Ctrl-C or SIGTERM.
PIDS=()
WORK=$(mktemp -d "$DATA_PARENT/cairn-vs-etcd.XXXXXX")
BIN=$WORK/bin

stop_pids() { # stop_pids PID...: SIGTERM, up to 10s grace, then SIGKILL
	local pid deadline
	(($# > 0)) || return 0
	for pid in "$@"; do
		kill -TERM "$pid" 2>/dev/null || true
	done
	deadline=$((SECONDS + 10))
	for pid in "$@"; do
		while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do
			sleep 0.1
		done
		if kill -0 "$pid" 2>/dev/null; then
			kill -KILL "$pid" 2>/dev/null || true
		fi
		wait "$pid" 2>/dev/null || true
	done
}

cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	if ((${#PIDS[@]} > 0)); then
		log "stopping ${#PIDS[@]} server process(es): ${PIDS[*]}"
		stop_pids "${PIDS[@]}"
	fi
	if [[ -n ${KEEP_DATA:-} ]]; then
		log "data kept in $WORK"
	else
		rm -rf "$WORK"
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

forget_pids() { # forget_pids PID...: drop stopped PIDs from PIDS
	local keep=() p q gone
	for p in "${PIDS[@]}"; do
		gone=
		for q in "$@"; do [[ $p == "$q" ]] && gone=1; done
		[[ -n $gone ]] || keep+=("$p")
	done
	PIDS=("${keep[@]}")
}

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

check_ports() { # check_ports BASE: the six ports of a 3-member cluster are free
	local p
	for p in $(seq "$1" $(($1 + 5))); do
		if port_in_use "$p"; then
			die "port $p is in use; choose another base (ETCD_PORT_BASE / CAIRN_PORT_BASE)"
		fi
	done
}

conns_for() { # conns_for CLIENTS
	if (($1 < MAX_CONNS)); then echo "$1"; else echo "$MAX_CONNS"; fi
}

# --- tools ----------------------------------------------------------------
mkdir -p "$BIN" "$OUT"
fstype=$(stat -f -c %T "$WORK")
if [[ $fstype == tmpfs || $fstype == ramfs ]]; then
	die "$WORK is on $fstype, where fsync costs nothing; set DATA_PARENT to a directory on a real disk"
fi
log "building the load generator"
go build -o "$BIN/etcdbench" ./bench/cmd/etcdbench
go build -o "$BIN/benchtable" ./bench/cmd/benchtable

install_etcd() {
	if [[ -n ${ETCD_BIN:-} ]]; then
		[[ -x $ETCD_BIN ]] || die "ETCD_BIN=$ETCD_BIN is not executable"
		return
	fi
	case $ETCD_SOURCE in
	build)
		# A current etcd, built from its Go modules at the version pinned in
		# bench/etcdserver/go.mod (a module of its own, so that etcd's server
		# dependencies stay out of cairn's go.mod).
		log "building etcd from Go modules (bench/etcdserver)"
		(cd bench/etcdserver && go build -o "$BIN/etcd" .)
		ETCD_BIN=$BIN/etcd
		;;
	apt)
		if ! command -v etcd >/dev/null 2>&1; then
			log "installing Debian's etcd-server"
			local sudo=
			((EUID == 0)) || sudo=sudo
			$sudo apt-get update -qq
			DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq etcd-server >/dev/null
		fi
		ETCD_BIN=$(command -v etcd)
		;;
	*) die "ETCD_SOURCE must be build or apt, not $ETCD_SOURCE" ;;
	esac
}

# --- etcd -----------------------------------------------------------------
ETCD_PIDS=()
ETCD_ENDPOINTS=

start_etcd() {
	local i c p cluster="" token
	check_ports "$ETCD_PORT_BASE"
	for i in 1 2 3; do
		p=$((ETCD_PORT_BASE + 2 * (i - 1) + 1))
		cluster+="${cluster:+,}e$i=http://127.0.0.1:$p"
	done
	token=cairn-vs-etcd-$$-$RANDOM
	ETCD_ENDPOINTS=
	mkdir -p "$WORK/etcd" "$OUT/logs"
	for i in 1 2 3; do
		c=$((ETCD_PORT_BASE + 2 * (i - 1)))
		p=$((c + 1))
		ETCD_ENDPOINTS+="${ETCD_ENDPOINTS:+,}http://127.0.0.1:$c"
		# Defaults otherwise: fsync on every WAL write, snapshot and backend
		# settings as shipped.
		"$ETCD_BIN" --name "e$i" --data-dir "$WORK/etcd/e$i" \
			--listen-client-urls "http://127.0.0.1:$c" --advertise-client-urls "http://127.0.0.1:$c" \
			--listen-peer-urls "http://127.0.0.1:$p" --initial-advertise-peer-urls "http://127.0.0.1:$p" \
			--initial-cluster "$cluster" --initial-cluster-state new --initial-cluster-token "$token" \
			--logger zap --log-level warn \
			>"$OUT/logs/etcd-e$i.log" 2>&1 &
		PIDS+=($!)
		ETCD_PIDS+=($!)
	done
	log "etcd members started: pids ${ETCD_PIDS[*]}, clients at $ETCD_ENDPOINTS"
}

stop_etcd() {
	stop_pids "${ETCD_PIDS[@]}"
	forget_pids "${ETCD_PIDS[@]}"
	ETCD_PIDS=()
}

run_etcd_workload() { # run_etcd_workload NAME FLAGS...
	local name=$1 clients pid
	shift
	for pid in "${ETCD_PIDS[@]}"; do
		kill -0 "$pid" 2>/dev/null || die "etcd member pid $pid has exited; see $OUT/logs"
	done
	clients=$(workload_clients "$@")
	log "etcd $name"
	"$BIN/etcdbench" --target etcd --endpoints "$ETCD_ENDPOINTS" --workload "$name" \
		--duration "$DURATION" --warmup "$WARMUP" --keys "$KEYS" --value-size "$VALUE_SIZE" \
		--op-timeout "$OP_TIMEOUT" --conns "$(conns_for "$clients")" \
		--server-pids "$(
			IFS=,
			echo "${ETCD_PIDS[*]}"
		)" \
		${ETCD_LEADER_ONLY:+--leader-only} --json "$OUT/etcd/$name.json" "$@" ||
		log "etcd $name FAILED (exit $?); its row will be empty"
}

workload_clients() { # the value of --clients in FLAGS...
	while (($# > 1)); do
		if [[ $1 == --clients ]]; then
			echo "$2"
			return
		fi
		shift
	done
	echo 16
}

# ============================================================================
# CAIRN HOOKS. If cmd/cairn cannot be built (or lacks `bench`), cairn_build
# fails and the table says why in cairn's columns.
#
# Contract: `cairn bench --target cairn` takes the workload flags of
# loadgen.RegisterFlags (the same as bench/cmd/etcdbench), plus --endpoints,
# and writes a loadgen.Result as JSON to --json. The servers are started from
# a built binary rather than `go run ./cmd/cairn server`, so that the PIDs
# recorded (and charged for CPU) are the servers', not the go tool's.
# ============================================================================
CAIRN_PIDS=()
CAIRN_ENDPOINTS=
CAIRN_WHY="not built yet"

# CAIRN HOOK 1/3: build cmd/cairn; fail (setting CAIRN_WHY) while it cannot be
# benchmarked.
cairn_build() {
	if [[ ! -d cmd/cairn ]]; then
		CAIRN_WHY="not built yet"
		return 1
	fi
	if ! go build -o "$BIN/cairn" ./cmd/cairn; then
		CAIRN_WHY="does not build"
		return 1
	fi
	if ! "$BIN/cairn" bench --help >/dev/null 2>&1; then
		CAIRN_WHY="not built yet (no bench verb)"
		return 1
	fi
}

# CAIRN HOOK 2/3: start a 3-node cluster on 127.0.0.1, data in $WORK/cairn,
# fsync on, and set CAIRN_PIDS and CAIRN_ENDPOINTS.
cairn_start() {
	local i c p peers="" cluster_id
	check_ports "$CAIRN_PORT_BASE"
	for i in 1 2 3; do
		c=$((CAIRN_PORT_BASE + 2 * (i - 1)))
		p=$((c + 1))
		peers+="${peers:+,}$i=127.0.0.1:$p/127.0.0.1:$c"
	done
	cluster_id=$((($$ << 8) + RANDOM % 256 + 1))
	CAIRN_ENDPOINTS=
	mkdir -p "$WORK/cairn" "$OUT/logs"
	for i in 1 2 3; do
		c=$((CAIRN_PORT_BASE + 2 * (i - 1)))
		CAIRN_ENDPOINTS+="${CAIRN_ENDPOINTS:+,}127.0.0.1:$c"
		# Defaults otherwise: every WAL write is fsynced (cairn has no
		# switch to turn that off), snapshot and timing settings as shipped.
		"$BIN/cairn" server --id "$i" --cluster-id "$cluster_id" --peers "$peers" \
			--data-dir "$WORK/cairn/n$i" --log-level warn \
			>"$OUT/logs/cairn-n$i.log" 2>&1 &
		PIDS+=($!)
		CAIRN_PIDS+=($!)
	done
	log "cairn nodes started: pids ${CAIRN_PIDS[*]}, clients at $CAIRN_ENDPOINTS"
}

# CAIRN HOOK 3/3: run one workload; the same flags as run_etcd_workload.
run_cairn_workload() { # run_cairn_workload NAME FLAGS...
	local name=$1 clients pid
	shift
	for pid in "${CAIRN_PIDS[@]}"; do
		kill -0 "$pid" 2>/dev/null || die "cairn node pid $pid has exited; see $OUT/logs"
	done
	clients=$(workload_clients "$@")
	log "cairn $name"
	"$BIN/cairn" bench --target cairn --endpoints "$CAIRN_ENDPOINTS" --workload "$name" \
		--duration "$DURATION" --warmup "$WARMUP" --keys "$KEYS" --value-size "$VALUE_SIZE" \
		--op-timeout "$OP_TIMEOUT" --conns "$(conns_for "$clients")" \
		--server-pids "$(
			IFS=,
			echo "${CAIRN_PIDS[*]}"
		)" \
		--json "$OUT/cairn/$name.json" "$@" ||
		log "cairn $name FAILED (exit $?); its row will be empty"
}

stop_cairn() {
	stop_pids "${CAIRN_PIDS[@]}"
	forget_pids "${CAIRN_PIDS[@]}"
	CAIRN_PIDS=()
}
# ============================================================================

# --- run ------------------------------------------------------------------
routing="all members, balanced by etcd's client"
[[ -z ${ETCD_LEADER_ONLY:-} ]] || routing="the leader only"
log "machine: $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg); data dirs on $fstype under $WORK"
log "workloads: $DURATION each after $WARMUP warmup, $KEYS keys, $VALUE_SIZE-byte values, up to $MAX_CONNS connections"

if [[ -z ${SKIP_ETCD:-} ]]; then
	install_etcd
	log "etcd: $("$ETCD_BIN" --version | head -1) at $ETCD_BIN; requests go to $routing"
	mkdir -p "$OUT/etcd"
	"$ETCD_BIN" --version >"$OUT/etcd/VERSION"
	start_etcd
	for w in "${WORKLOADS[@]}"; do
		# shellcheck disable=SC2086 # the flags are meant to split
		run_etcd_workload $w
	done
	stop_etcd
fi

cairn_ran=
if [[ -z ${SKIP_CAIRN:-} ]]; then
	if cairn_build; then
		mkdir -p "$OUT/cairn"
		cairn_start
		for w in "${WORKLOADS[@]}"; do
			# shellcheck disable=SC2086
			run_cairn_workload $w
		done
		stop_cairn
		cairn_ran=1
	else
		log "cairn: $CAIRN_WHY"
	fi
else
	CAIRN_WHY="skipped"
fi

names=()
for w in "${WORKLOADS[@]}"; do names+=("${w%% *}"); done
echo
echo "cairn vs etcd: 3 members each on 127.0.0.1, fsync on; $DURATION per workload after $WARMUP warmup;"
echo "$KEYS keys, $VALUE_SIZE-byte values; etcd requests to $routing;"
echo "$(nproc) CPUs shared by servers and load generator; load average now $(cut -d' ' -f1-3 /proc/loadavg)"
echo
"$BIN/benchtable" -baseline-dir "$OUT/etcd" ${cairn_ran:+-candidate-dir "$OUT/cairn"} \
	-missing "$CAIRN_WHY" -workloads "$(
		IFS=,
		echo "${names[*]}"
	)" | tee "$OUT/table.md"
[[ -n $cairn_ran ]] || echo "cairn: $CAIRN_WHY"
echo
echo "results, logs and table.md in $OUT"
