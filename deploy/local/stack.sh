#!/usr/bin/env bash
# Local KazPost stack without containers: Apache Kafka (KRaft, single node) and a
# MongoDB-wire database (FerretDB v1 on PostgreSQL 15, or on SQLite).
#
#   deploy/local/stack.sh install      fetch Kafka jars, PostgreSQL 15, build FerretDB (cached)
#   deploy/local/stack.sh start        start whatever is not running, wait until really ready
#   deploy/local/stack.sh stop         stop everything of this stack
#   deploy/local/stack.sh status       running/stopped, pid and port of each component
#   deploy/local/stack.sh gin-indexes  GIN indexes in PostgreSQL for every FerretDB collection
#   deploy/local/stack.sh pause-db     SIGSTOP the FerretDB process (fault tests)
#   deploy/local/stack.sh resume-db    SIGCONT it again
#   deploy/local/stack.sh restart-kafka [--kill] [--down S]
#                                      stop the broker (SIGTERM: clean shutdown; --kill: SIGKILL),
#                                      stay down S seconds [0], start it, wait until ready
#   deploy/local/stack.sh restart-db [--kill] [--down S] [--ferretdb-only]
#                                      the same for FerretDB and PostgreSQL (--kill: SIGKILL
#                                      FerretDB and `pg_ctl stop -m immediate`, i.e. crash recovery)
#   deploy/local/stack.sh gin-indexes-db DB   gin-indexes for another database than kazpost
#   deploy/local/stack.sh env          print `export` lines pointing the Python code here
#
# Every command is idempotent. Settings come from the environment (defaults in brackets), so
# a dev stack and a test stack can run side by side with different ports and state dirs:
#   KAZPOST_CACHE                  downloads and builds, keyed by version
#                                  [${XDG_CACHE_HOME:-$HOME/.cache}/kazpost]
#   KAZPOST_STATE                  data, logs, pid files of this stack [<repo>/.run/dev]
#   KAZPOST_KAFKA_PORT             Kafka client listener [9092]
#   KAZPOST_KAFKA_CONTROLLER_PORT  KRaft controller listener [9093]
#   KAZPOST_PG_PORT                PostgreSQL (127.0.0.1 and a socket in the state dir) [5433]
#   KAZPOST_MONGO_PORT             FerretDB, MongoDB wire protocol [27017]
#   KAZPOST_DB_BACKEND             postgresql | sqlite [postgresql]
#   KAZPOST_START_TIMEOUT          seconds `start` waits for readiness [120]
#   PYTHON                         interpreter for readiness probes, ideally with aiokafka
#                                  and pymongo installed [python3]
#
# Layout of the state dir: kafka/ (server.properties, data/), pg/ (PostgreSQL cluster),
# pgsock/ (its unix socket), sqlite/ (SQLite backend files), logs/, pids/.
set -euo pipefail

# ---------------------------------------------------------------------------------------------
# Settings
# ---------------------------------------------------------------------------------------------
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"   # deploy/local
REPO="$(cd "$HERE/../.." && pwd -P)"

KAFKA_VERSION=4.1.1
FERRETDB_VERSION=v1.24.2
PG_MAJOR=15
PGBIN="/usr/lib/postgresql/$PG_MAJOR/bin"

CACHE="${KAZPOST_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/kazpost}"
STATE="${KAZPOST_STATE:-$REPO/.run/dev}"
KAFKA_PORT="${KAZPOST_KAFKA_PORT:-9092}"
KAFKA_CONTROLLER_PORT="${KAZPOST_KAFKA_CONTROLLER_PORT:-9093}"
PG_PORT="${KAZPOST_PG_PORT:-5433}"
MONGO_PORT="${KAZPOST_MONGO_PORT:-27017}"
DB_BACKEND="${KAZPOST_DB_BACKEND:-postgresql}"
START_TIMEOUT="${KAZPOST_START_TIMEOUT:-120}"
PYTHON="${PYTHON:-python3}"

case "$DB_BACKEND" in
  postgresql | sqlite) ;;
  *) echo "stack: KAZPOST_DB_BACKEND must be postgresql or sqlite, not '$DB_BACKEND'" >&2; exit 2 ;;
esac

# Absolute paths only: they end up in config files and in other users' processes.
mkdir -p "$CACHE" "$STATE"
CACHE="$(cd "$CACHE" && pwd -P)"
STATE="$(cd "$STATE" && pwd -P)"

KAFKA_HOME="$CACHE/kafka-$KAFKA_VERSION"
KAFKA_LIBS="$KAFKA_HOME/libs"
KAFKA_MARKER="$KAFKA_HOME/.complete"          # holds the sha256 of the pom it was made from
FERRETDB_SRC="$HERE/ferretdb"

LOGS="$STATE/logs"
PIDS="$STATE/pids"
KAFKA_DIR="$STATE/kafka"
PG_DATA="$STATE/pg"
PG_SOCK="$STATE/pgsock"
SQLITE_DIR="$STATE/sqlite"
PG_DB=kazpost
PG_ROLE=kazpost
MONGO_DB=kazpost
PROBE_DB=kazpost_probe     # readiness probe writes here, never into the application database

# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------
log() { printf 'stack: %s\n' "$*" >&2; }
die() { printf 'stack: error: %s\n' "$*" >&2; exit 1; }
need() { command -v "$1" >/dev/null 2>&1 || die "$1 not found on PATH ($2)"; }

# Hash of the FerretDB sources; names the cached binary so edits trigger a rebuild.
ferretdb_bin() {
  local h
  h="$(cat "$FERRETDB_SRC/go.sum" "$FERRETDB_SRC/main.go" | sha256sum | cut -c1-12)"
  printf '%s/ferretdb-%s-%s/kazpost-ferretdb' "$CACHE" "$FERRETDB_VERSION" "$h"
}

# Serialise concurrent runs on the same directory (two stacks installing at once, ...).
# Long-lived children must not inherit descriptor 9 (see spawn and start_postgres).
lock() { # lock FILE [SECONDS]
  exec 9>"$1"
  flock -w "${2:-300}" 9 || die "timed out waiting for lock $1 (another stack.sh still running?)"
}

# Runs a command as the PostgreSQL OS user: initdb and postgres refuse to run as root.
as_pg() {
  if [[ $EUID -eq 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi
}

# pid_alive NAME PATTERN: prints the pid from $PIDS/NAME.pid if that process is alive and its
# command line contains PATTERN (guards against a recycled pid). Removes stale pid files.
pid_alive() {
  local f="$PIDS/$1.pid" pid
  [[ -s $f ]] || return 1
  pid="$(head -n1 "$f")"
  if [[ $pid =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null && cmdline_has "$pid" "$2"; then
    printf '%s' "$pid"
    return 0
  fi
  rm -f "$f"
  return 1
}
# cmdline_has PID STRING: the process's command line (arguments joined by spaces, plus a
# trailing space) contains STRING.
cmdline_has() { tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null | grep -qF -- "$2"; }

# A component that is already running must match the current settings; otherwise `start`
# would wait on the wrong port. Changing settings means `stop` first.
mismatch() { die "$1 (pid $2) runs with other settings ($3); '$0 stop' first, or set them back"; }

kafka_pid()    { pid_alive kafka "$KAFKA_DIR/server.properties"; }
ferretdb_pid() { pid_alive ferretdb "kazpost-ferretdb"; }
postgres_pid() { pid_alive postgres "$PG_DATA"; }

# True if something accepts TCP connections on 127.0.0.1:PORT.
port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Start a command detached (own session, no terminal, stdin closed); its real pid goes to
# PIDFILE. `exec` inside keeps the pid identical to the pid the server runs under. The lock
# descriptor (9) is closed so the server does not hold the stack lock for its lifetime.
spawn() { # spawn PIDFILE LOGFILE CMD...
  local pidfile="$1" logfile="$2"
  shift 2
  setsid bash -c 'echo $$ >"$0"; exec "$@"' "$pidfile" "$@" >>"$logfile" 2>&1 </dev/null 9>&- &
  local i pid
  for i in $(seq 50); do [[ -s $pidfile ]] && break; sleep 0.1; done
  [[ -s $pidfile ]] || die "could not start $1 (see $logfile)"
  # Return once the exec is done: while it runs, /proc/PID/cmdline can read empty, and a
  # pid check in that window took the live server for a dead one (and dropped its pid file).
  pid="$(head -n1 "$pidfile")"
  for i in $(seq 100); do
    [[ "$(readlink "/proc/$pid/exe" 2>/dev/null)" == */bash ]] || return 0
    sleep 0.05
  done
}

# Send SIGTERM, wait up to SECONDS for the exit, then SIGKILL (and return 1).
terminate() { # terminate NAME PID SECONDS
  local name="$1" pid="$2" secs="$3" i
  kill -TERM "$pid" 2>/dev/null || true
  kill -CONT "$pid" 2>/dev/null || true   # a paused process would never see the SIGTERM
  for ((i = 0; i < secs * 10; i++)); do
    kill -0 "$pid" 2>/dev/null || { rm -f "$PIDS/$name.pid"; log "$name stopped"; return 0; }
    sleep 0.1
  done
  log "$name did not exit within ${secs}s, sending SIGKILL"
  kill -KILL "$pid" 2>/dev/null || true
  rm -f "$PIDS/$name.pid"
  return 1
}

tail_logs() { # tail_logs FILE... — for error messages
  local f
  for f in "$@"; do
    [[ -f $f ]] || continue
    printf '\n----- last lines of %s -----\n' "$f" >&2
    tail -n 40 "$f" >&2
  done
}

pg_psql() { # pg_psql DB ARGS... — psql as the superuser over the unix socket
  local db="$1"
  shift
  "$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$PG_SOCK" -p "$PG_PORT" -U postgres -d "$db" "$@"
}

# ---------------------------------------------------------------------------------------------
# install
# ---------------------------------------------------------------------------------------------
install_kafka() {
  local pom="$HERE/kafka/pom.xml" want
  want="$(sha256sum "$pom" | cut -d' ' -f1)"
  if [[ -f $KAFKA_MARKER && "$(cat "$KAFKA_MARKER")" == "$want" ]]; then
    log "kafka $KAFKA_VERSION jars present ($KAFKA_LIBS)"
    return 0
  fi
  need mvn "install Debian package maven"
  log "fetching kafka $KAFKA_VERSION jars from Maven Central into $KAFKA_LIBS"
  rm -rf "$KAFKA_LIBS" "$KAFKA_MARKER"
  mkdir -p "$KAFKA_LIBS"
  # -f points at the pom; Maven writes nothing next to it for this goal.
  mvn -q -B -f "$pom" -Dmaven.repo.local="$CACHE/m2" dependency:copy-dependencies \
    -DincludeScope=runtime -DoutputDirectory="$KAFKA_LIBS"
  [[ -f "$KAFKA_LIBS/kafka_2.13-$KAFKA_VERSION.jar" && -f "$KAFKA_LIBS/log4j-slf4j-impl-2.24.3.jar" ]] ||
    die "maven finished but the kafka jars are missing from $KAFKA_LIBS"
  printf '%s\n' "$want" >"$KAFKA_MARKER"
}

install_postgres() {
  if [[ -x $PGBIN/postgres ]]; then
    log "postgresql $PG_MAJOR present ($PGBIN)"
    return 0
  fi
  [[ $EUID -eq 0 ]] || die "postgresql-$PG_MAJOR is missing; install it (apt-get install postgresql-$PG_MAJOR) as root"
  log "installing postgresql-$PG_MAJOR with apt-get"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends "postgresql-$PG_MAJOR"
}

install_ferretdb() {
  local bin tmp
  bin="$(ferretdb_bin)"
  if [[ -x $bin ]]; then
    log "ferretdb $FERRETDB_VERSION binary present ($bin)"
    return 0
  fi
  # The usual place of an official Go install, when it is not on PATH (non-login shells).
  if ! command -v go >/dev/null 2>&1 && [[ -x /usr/local/go/bin/go ]]; then PATH="/usr/local/go/bin:$PATH"; fi
  need go "install Go >= 1.24"
  log "building ferretdb $FERRETDB_VERSION into $bin (first build takes a minute or two)"
  mkdir -p "$(dirname "$bin")"
  tmp="$bin.tmp.$$"
  # Modules are cached next to the other downloads; go.sum is committed, so the build never
  # rewrites files in the repository (-mod=readonly is Go's default).
  (cd "$FERRETDB_SRC" &&
    GOMODCACHE="$CACHE/gomod" GOFLAGS=-buildvcs=false CGO_ENABLED=0 \
      go build -trimpath -ldflags="-s -w" -o "$tmp" .)
  mv -f "$tmp" "$bin"
}

install_kcat() { # optional: handy for poking at topics; failure is not an error
  command -v kcat >/dev/null 2>&1 && return 0
  if [[ $EUID -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
    log "installing kcat (optional)"
    if DEBIAN_FRONTEND=noninteractive apt-get install -y -q kcat >/dev/null 2>&1 ||
       { DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null 2>&1 &&
         DEBIAN_FRONTEND=noninteractive apt-get install -y -q kcat >/dev/null 2>&1; }; then
      return 0
    fi
  fi
  log "kcat not installed (optional, skipped)"
}

cmd_install() {
  need java "install Debian package openjdk-17-jre-headless"
  lock "$CACHE/.install.lock"
  install_kafka
  install_postgres
  install_ferretdb
  install_kcat
  bash "$HERE/narration-deps.sh" || log "espeak-ng/opus-tools missing: the narration service will not be ready"
  log "install complete"
}

# Checks that `install` has run, so `start` fails with a clear message instead of midway.
require_installed() {
  [[ -f $KAFKA_MARKER ]] || die "kafka jars missing: run '$0 install' first"
  [[ -x "$(ferretdb_bin)" ]] || die "ferretdb binary missing or outdated: run '$0 install' first"
  if [[ $DB_BACKEND == postgresql ]]; then
    [[ -x $PGBIN/postgres ]] || die "postgresql $PG_MAJOR missing: run '$0 install' first"
  fi
  need java "install Debian package openjdk-17-jre-headless"
}

# ---------------------------------------------------------------------------------------------
# start
# ---------------------------------------------------------------------------------------------
# The broker's JVM: fixed 512 MB heap. The -Xlog switches silence class-data-sharing notes.
KAFKA_JAVA_OPTS=(-Xmx512m -Xms512m -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -Djava.awt.headless=true
                 -Xlog:cds*=off -Xlog:class+path=off)

kafka_java() { # kafka_java MAIN-CLASS ARGS... — a short-lived Kafka tool on the broker's classpath
  java -Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Djava.awt.headless=true \
    -Dlog4j2.configurationFile="$HERE/kafka/log4j2.yaml" -Dkafka.logs.dir="$LOGS" \
    -Dkafka.log.name=kafka-tools -cp "$KAFKA_LIBS/*" "$@"
}

# Class-data-sharing archive of the broker's classes: it halves JVM start-up (about 8 s to
# 4 s on 2 cores). It is written once, when the first broker started without one exits through
# `stop` (that stop takes about 5 s longer). Keyed by the jar set and the java binary; the JVM
# silently ignores an archive that does not match its classpath.
kafka_cds_archive() {
  local java key
  java="$(readlink -f "$(command -v java)")"
  key="$({ cat "$KAFKA_MARKER"; echo "$java"; stat -c %Y "$java"; } | sha256sum | cut -c1-12)"
  printf '%s/kafka-%s.jsa' "$KAFKA_HOME" "$key"
}

# After the broker exited: keep the archive it wrote at exit, if any (only after a clean exit:
# a killed JVM may leave half a file).
finish_kafka_cds() { # finish_kafka_cds clean|killed
  local pending="$KAFKA_DIR/cds.pending" tmp
  [[ -f $pending ]] || return 0
  tmp="$(cat "$pending")"
  if [[ $1 == clean && -s $tmp ]]; then mv -f "$tmp" "${tmp%.tmp.*}"; else rm -f "$tmp"; fi
  rm -f "$pending"
}

write_kafka_config() {
  mkdir -p "$KAFKA_DIR/data"
  cat >"$KAFKA_DIR/server.properties" <<EOF
# Generated by deploy/local/stack.sh on every start; edit the script, not this file.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$KAFKA_CONTROLLER_PORT
listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,CONTROLLER://127.0.0.1:$KAFKA_CONTROLLER_PORT
advertised.listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs=$KAFKA_DIR/data

# Single node: every internal topic with one replica; one partition each keeps the first
# consumer group and the first transaction fast.
offsets.topic.replication.factor=1
offsets.topic.num.partitions=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
default.replication.factor=1
min.insync.replicas=1
num.partitions=1

# Topics are created explicitly by the code, never by a typo.
auto.create.topics.enable=false
group.initial.rebalance.delay.ms=0
# Fast restart after a crash: the old broker registration expires in 3 s, not 9 s.
broker.session.timeout.ms=3000
broker.heartbeat.interval.ms=1000
EOF
}

start_kafka() {
  local pid
  if pid="$(kafka_pid)"; then
    grep -qxF "listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,CONTROLLER://127.0.0.1:$KAFKA_CONTROLLER_PORT" \
      "$KAFKA_DIR/server.properties" || mismatch kafka "$pid" "ports"
    log "kafka already running (pid $pid)"
    return 0
  fi
  port_busy "$KAFKA_PORT" && die "port $KAFKA_PORT is taken by another process (KAZPOST_KAFKA_PORT)"
  port_busy "$KAFKA_CONTROLLER_PORT" &&
    die "port $KAFKA_CONTROLLER_PORT is taken by another process (KAZPOST_KAFKA_CONTROLLER_PORT)"
  write_kafka_config
  if [[ ! -f $KAFKA_DIR/data/meta.properties ]]; then
    [[ -s $KAFKA_DIR/cluster.id ]] ||
      kafka_java kafka.tools.StorageTool random-uuid >"$KAFKA_DIR/cluster.id"
    log "formatting kafka storage in $KAFKA_DIR/data"
    kafka_java kafka.tools.StorageTool format -t "$(cat "$KAFKA_DIR/cluster.id")" \
      -c "$KAFKA_DIR/server.properties" --ignore-formatted >>"$LOGS/kafka.out" 2>&1 ||
      { tail_logs "$LOGS/kafka.out"; die "kafka storage format failed"; }
  fi
  local jsa cds
  finish_kafka_cds killed   # leftovers of a broker that did not exit through `stop`
  jsa="$(kafka_cds_archive)"
  if [[ -s $jsa ]]; then
    cds=(-XX:SharedArchiveFile="$jsa")
  else
    cds=(-XX:ArchiveClassesAtExit="$jsa.tmp.$$")
    printf '%s\n' "$jsa.tmp.$$" >"$KAFKA_DIR/cds.pending"
  fi
  log "starting kafka on 127.0.0.1:$KAFKA_PORT (controller $KAFKA_CONTROLLER_PORT)"
  spawn "$PIDS/kafka.pid" "$LOGS/kafka.out" \
    java "${KAFKA_JAVA_OPTS[@]}" "${cds[@]}" \
    -Dlog4j2.configurationFile="$HERE/kafka/log4j2.yaml" -Dkafka.logs.dir="$LOGS" \
    -cp "$KAFKA_LIBS/*" kafka.Kafka "$KAFKA_DIR/server.properties"
}

# The postgres OS user must reach its data dir and log file: give "search" (x) permission on
# every directory on the way to DIR that lacks it for others. Read permission is not granted.
make_traversable() { # make_traversable DIR
  [[ $EUID -eq 0 ]] || return 0
  local d="$1" dirs=()
  while [[ $d != / ]]; do dirs=("$d" "${dirs[@]}"); d="$(dirname "$d")"; done
  for d in "${dirs[@]}"; do
    if ! runuser -u postgres -- test -x "$d"; then
      log "granting o+x on $d so the postgres user can reach $1"
      chmod o+x "$d"
    fi
  done
}

start_postgres() {
  local pid
  if pid="$(postgres_pid)"; then
    cmdline_has "$pid" "-p $PG_PORT " || mismatch postgresql "$pid" "port"
    log "postgresql already running (pid $pid)"
    return 0
  fi
  # A server left running without our pid file (e.g. the pid file was deleted)?
  if [[ -f $PG_DATA/postmaster.pid ]] && as_pg "$PGBIN/pg_ctl" status -D "$PG_DATA" >/dev/null 2>&1; then
    head -n1 "$PG_DATA/postmaster.pid" >"$PIDS/postgres.pid"
    log "postgresql already running (pid $(cat "$PIDS/postgres.pid"))"
    return 0
  fi
  port_busy "$PG_PORT" && die "port $PG_PORT is taken by another process (KAZPOST_PG_PORT)"
  mkdir -p "$PG_DATA" "$PG_SOCK"
  make_traversable "$STATE"
  make_traversable "$LOGS"
  touch "$LOGS/postgres.log"
  if [[ $EUID -eq 0 ]]; then chown postgres: "$PG_DATA" "$PG_SOCK" "$LOGS/postgres.log"; fi
  chmod 700 "$PG_DATA"
  if [[ ! -f $PG_DATA/PG_VERSION ]]; then
    log "initialising postgresql cluster in $PG_DATA"
    as_pg "$PGBIN/initdb" -D "$PG_DATA" -U postgres --auth=trust --encoding=UTF8 --locale=C \
      >>"$LOGS/postgres.log" 2>&1 || { tail_logs "$LOGS/postgres.log"; die "initdb failed"; }
  fi
  log "starting postgresql on 127.0.0.1:$PG_PORT"
  as_pg "$PGBIN/pg_ctl" start -D "$PG_DATA" -l "$LOGS/postgres.log" -w -t 60 -s \
    -o "-p $PG_PORT -c listen_addresses=127.0.0.1 -c unix_socket_directories=$PG_SOCK" 9>&- ||
    { tail_logs "$LOGS/postgres.log"; die "postgresql did not start"; }
  head -n1 "$PG_DATA/postmaster.pid" >"$PIDS/postgres.pid"
}

ensure_pg_database() { # FerretDB's role and database (checked on every start: cheap)
  if [[ -z "$(pg_psql postgres -tAc "SELECT 1 FROM pg_roles WHERE rolname = '$PG_ROLE'")" ]]; then
    pg_psql postgres -c "CREATE ROLE $PG_ROLE LOGIN"
  fi
  if [[ -z "$(pg_psql postgres -tAc "SELECT 1 FROM pg_database WHERE datname = '$PG_DB'")" ]]; then
    pg_psql postgres -c "CREATE DATABASE $PG_DB OWNER $PG_ROLE"
  fi
  # Every read of ours is by `_id` (or another GIN-indexed field), never a scan. FerretDB stores
  # each document as one jsonb value, which PostgreSQL moves out of line (TOAST) once it is
  # larger than ~2 KB: a table of 2,000 related lists then looks like a few heap pages, the
  # planner picks a sequential scan over the GIN index, and every lookup decompresses every row
  # (18.6 ms instead of 0.2 ms at 2,000 documents). A scan stays possible where no index fits.
  # The cost that setting puts on a plan that has no index to use (1e10) is far above
  # jit_above_cost: such a query (a collection not yet indexed, a scan by a field without an
  # index) would be JIT-compiled on every call, 20-50 ms for a few rows. Short queries never
  # gain from JIT, so it is off for the role.
  local role_settings
  role_settings="$(pg_psql postgres -tAc "SELECT coalesce(array_to_string(setconfig, ','), '') FROM pg_db_role_setting s JOIN pg_roles r ON r.oid = s.setrole WHERE r.rolname = '$PG_ROLE' AND s.setdatabase = 0")"
  if [[ $role_settings != *enable_seqscan=off* ]]; then
    pg_psql postgres -c "ALTER ROLE $PG_ROLE SET enable_seqscan = off"
  fi
  if [[ $role_settings != *jit=off* ]]; then
    pg_psql postgres -c "ALTER ROLE $PG_ROLE SET jit = off"
  fi
}

start_ferretdb() {
  local pid bin args
  if pid="$(ferretdb_pid)"; then
    cmdline_has "$pid" "-listen-addr 127.0.0.1:$MONGO_PORT " || mismatch ferretdb "$pid" "port"
    cmdline_has "$pid" "-handler $DB_BACKEND " || mismatch ferretdb "$pid" "backend"
    log "ferretdb already running (pid $pid)"
    return 0
  fi
  port_busy "$MONGO_PORT" && die "port $MONGO_PORT is taken by another process (KAZPOST_MONGO_PORT)"
  bin="$(ferretdb_bin)"
  args=(-listen-addr "127.0.0.1:$MONGO_PORT" -handler "$DB_BACKEND" -log-level WARN)
  if [[ $DB_BACKEND == postgresql ]]; then
    args+=(-postgresql-url "postgres://$PG_ROLE@127.0.0.1:$PG_PORT/$PG_DB?pool_max_conns=50")
  else
    mkdir -p "$SQLITE_DIR"
    args+=(-sqlite-dir "$SQLITE_DIR")
  fi
  log "starting ferretdb ($DB_BACKEND) on 127.0.0.1:$MONGO_PORT"
  spawn "$PIDS/ferretdb.pid" "$LOGS/ferretdb.log" "$bin" "${args[@]}"
}

# Readiness probe for Kafka with aiokafka: metadata answers AND the group coordinator
# answers (metadata comes first; right after a restart group calls still fail with
# GroupLoadInProgress, and the admin client does not retry). Finding the coordinator of a
# probe group also creates __consumer_offsets, so the first real consumer does not wait.
# Retries until the deadline; exits early if the broker process dies.
KAFKA_PROBE_PY='
import asyncio, logging, os, sys, time
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import for_code

logging.getLogger("aiokafka").setLevel(logging.CRITICAL)   # refused connections are expected

bootstrap, pid, deadline = sys.argv[1], int(sys.argv[2]), time.monotonic() + float(sys.argv[3])

async def probe():
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=5000)
    await admin.start()
    try:
        await admin.describe_cluster()
        await admin.list_consumer_groups()
        for response in await admin.describe_consumer_groups(["kazpost-readiness-probe"]):
            for group in response.groups:
                if group[0]:
                    raise for_code(group[0])("describe group")
    finally:
        await admin.close()

while True:  # at least one attempt, even past the deadline
    try:
        os.kill(pid, 0)
    except OSError:
        print("kafka process exited", file=sys.stderr); sys.exit(1)
    try:
        asyncio.run(asyncio.wait_for(probe(), 10))
        sys.exit(0)
    except Exception as exc:
        last = f"{type(exc).__name__}: {exc}"
    if time.monotonic() >= deadline:
        break
    time.sleep(0.3)
print(f"kafka not ready: {last}", file=sys.stderr)
sys.exit(1)
'

# Readiness probe for the database: ping, then a real write and read in a probe database
# (on PostgreSQL that reaches the backend; a ping alone may not).
DB_PROBE_PY='
import os, sys, time
from pymongo import MongoClient

uri, dbname, pid, deadline = sys.argv[1], sys.argv[2], int(sys.argv[3]), time.monotonic() + float(sys.argv[4])
while True:  # at least one attempt, even past the deadline
    try:
        os.kill(pid, 0)
    except OSError:
        print("ferretdb process exited", file=sys.stderr); sys.exit(1)
    try:
        with MongoClient(uri, serverSelectionTimeoutMS=2000, timeoutMS=10000) as client:
            client.admin.command("ping")
            coll = client[dbname]["ready"]
            coll.replace_one({"_id": "probe"}, {"_id": "probe", "at": time.time()}, upsert=True)
            if coll.find_one({"_id": "probe"}) is None:
                raise RuntimeError("probe document not found after write")
        sys.exit(0)
    except Exception as exc:
        last = f"{type(exc).__name__}: {exc}"
    if time.monotonic() >= deadline:
        break
    time.sleep(0.3)
print(f"database not ready: {last}", file=sys.stderr)
sys.exit(1)
'

wait_kafka_ready() { # wait_kafka_ready DEADLINE(epoch seconds)
  local pid remaining
  pid="$(kafka_pid)" || { tail_logs "$LOGS/kafka.out" "$LOGS/kafka.log"; die "kafka exited during start-up"; }
  remaining=$(($1 - $(date +%s)))
  if "$PYTHON" -c 'import aiokafka' >/dev/null 2>&1; then
    "$PYTHON" -c "$KAFKA_PROBE_PY" "127.0.0.1:$KAFKA_PORT" "$pid" "$remaining" && return 0
  else
    # Fallback without aiokafka: Kafka's own group command on the broker's classpath.
    # Describing a probe group needs metadata, then the group coordinator (FindCoordinator,
    # which also creates __consumer_offsets) and its answer. The admin client retries while
    # the coordinator loads; "group not found" is the coordinator's answer, i.e. ready.
    log "($PYTHON has no aiokafka: probing kafka with its Java tools, slower)"
    local out=""
    while (($(date +%s) < $1)); do
      kill -0 "$pid" 2>/dev/null || break
      out="$(kafka_java org.apache.kafka.tools.consumer.group.ConsumerGroupCommand \
               --bootstrap-server "127.0.0.1:$KAFKA_PORT" --describe \
               --group kazpost-readiness-probe --timeout 5000 2>&1)" && return 0
      grep -q 'GroupIdNotFoundException' <<<"$out" && return 0
      sleep 1
    done
    printf '%s\n' "${out:-}" >&2
  fi
  tail_logs "$LOGS/kafka.out" "$LOGS/kafka.log"
  die "kafka on 127.0.0.1:$KAFKA_PORT not ready within ${START_TIMEOUT}s"
}

wait_db_ready() { # wait_db_ready DEADLINE(epoch seconds)
  local pid remaining
  pid="$(ferretdb_pid)" || { tail_logs "$LOGS/ferretdb.log"; die "ferretdb exited during start-up"; }
  "$PYTHON" -c 'import pymongo' >/dev/null 2>&1 ||
    die "cannot check the database: '$PYTHON' has no pymongo (set PYTHON to the project's venv python)"
  remaining=$(($1 - $(date +%s)))
  "$PYTHON" -c "$DB_PROBE_PY" "mongodb://127.0.0.1:$MONGO_PORT/" "$PROBE_DB" "$pid" "$remaining" &&
    return 0
  tail_logs "$LOGS/ferretdb.log"
  [[ $DB_BACKEND == postgresql ]] && tail_logs "$LOGS/postgres.log"
  die "database on 127.0.0.1:$MONGO_PORT not ready within ${START_TIMEOUT}s"
}

cmd_start() {
  require_installed
  mkdir -p "$LOGS" "$PIDS"
  lock "$STATE/.stack.lock"
  local t0 deadline ms
  t0="$(date +%s%N)"
  deadline=$(($(date +%s) + START_TIMEOUT))
  # Kafka first: the JVM warms up while PostgreSQL and FerretDB start.
  start_kafka
  if [[ $DB_BACKEND == postgresql ]]; then start_postgres; ensure_pg_database; fi
  start_ferretdb
  wait_db_ready "$deadline"
  wait_kafka_ready "$deadline"
  ms=$((($(date +%s%N) - t0) / 1000000))
  log "ready in $((ms / 1000)).$(printf '%03d' $((ms % 1000)) | cut -c1)s:" \
    "kafka 127.0.0.1:$KAFKA_PORT, mongodb://127.0.0.1:$MONGO_PORT/ ($DB_BACKEND)"
}

# ---------------------------------------------------------------------------------------------
# stop / status / pause / env
# ---------------------------------------------------------------------------------------------
cmd_stop() {
  mkdir -p "$PIDS"
  # Stopping must work even if the lock is stuck, so it only waits a while for it.
  exec 9>"$STATE/.stack.lock"
  flock -w 30 9 || log "lock $STATE/.stack.lock still held after 30s; stopping anyway"
  local pid
  if pid="$(ferretdb_pid)"; then terminate ferretdb "$pid" 30 || true; fi
  if pid="$(kafka_pid)"; then
    if terminate kafka "$pid" 30; then finish_kafka_cds clean; else finish_kafka_cds killed; fi
  fi
  if [[ -f $PG_DATA/postmaster.pid ]] && as_pg "$PGBIN/pg_ctl" status -D "$PG_DATA" >/dev/null 2>&1; then
    as_pg "$PGBIN/pg_ctl" stop -D "$PG_DATA" -m fast -w -t 60 -s && log "postgresql stopped"
  fi
  rm -f "$PIDS/postgres.pid"
  log "stack in $STATE stopped"
}

cmd_status() {
  local pid st
  show() { # show NAME PORT PID-OR-EMPTY [NOTE]
    if [[ -n $3 ]]; then
      st=running
      [[ "$(awk '{print $3}' "/proc/$3/stat" 2>/dev/null)" == T ]] && st="running (paused)"
      printf '%-9s %-17s pid %-8s port %s%s\n' "$1" "$st" "$3" "$2" "${4:-}"
    else
      printf '%-9s %-17s %-12s port %s%s\n' "$1" stopped "" "$2" "${4:-}"
    fi
  }
  pid="$(kafka_pid)" || pid=""
  show kafka "$KAFKA_PORT" "$pid" " (controller $KAFKA_CONTROLLER_PORT)"
  pid="$(postgres_pid)" || pid=""
  if [[ $DB_BACKEND == sqlite ]]; then
    show postgres "$PG_PORT" "$pid" " (not used: sqlite backend)"
  else
    show postgres "$PG_PORT" "$pid"
  fi
  pid="$(ferretdb_pid)" || pid=""
  show ferretdb "$MONGO_PORT" "$pid" " ($DB_BACKEND backend)"
  printf 'state     %s\n' "$STATE"
}

cmd_signal_db() { # cmd_signal_db STOP|CONT
  local pid
  pid="$(ferretdb_pid)" || die "ferretdb is not running"
  kill -"$1" "$pid"
  log "ferretdb (pid $pid) $([[ $1 == STOP ]] && echo paused || echo resumed)"
}

cmd_env() {
  local k v
  for k in KAZPOST_CACHE KAZPOST_STATE KAZPOST_KAFKA_PORT KAZPOST_KAFKA_CONTROLLER_PORT \
           KAZPOST_PG_PORT KAZPOST_MONGO_PORT KAZPOST_DB_BACKEND PYTHON \
           KAZPOST_KAFKA_BOOTSTRAP_SERVERS KAZPOST_MONGO_URL KAZPOST_MONGO_DATABASE; do
    case "$k" in
      KAZPOST_CACHE) v="$CACHE" ;;
      KAZPOST_STATE) v="$STATE" ;;
      KAZPOST_KAFKA_PORT) v="$KAFKA_PORT" ;;
      KAZPOST_KAFKA_CONTROLLER_PORT) v="$KAFKA_CONTROLLER_PORT" ;;
      KAZPOST_PG_PORT) v="$PG_PORT" ;;
      KAZPOST_MONGO_PORT) v="$MONGO_PORT" ;;
      KAZPOST_DB_BACKEND) v="$DB_BACKEND" ;;
      PYTHON) v="$PYTHON" ;;
      # What the Python settings (shared/settings.py) read:
      KAZPOST_KAFKA_BOOTSTRAP_SERVERS) v="127.0.0.1:$KAFKA_PORT" ;;
      KAZPOST_MONGO_URL) v="mongodb://127.0.0.1:$MONGO_PORT/" ;;
      KAZPOST_MONGO_DATABASE) v="$MONGO_DB" ;;
    esac
    printf 'export %s=%q\n' "$k" "$v"
  done
}

# ---------------------------------------------------------------------------------------------
# gin-indexes
# ---------------------------------------------------------------------------------------------
# FerretDB stores each collection of database `kazpost` as a table with one jsonb column
# `_jsonb` in the PostgreSQL schema `kazpost`; the schema's table _ferretdb_database_metadata
# maps collection (`_jsonb->'_id'`) to table (`_jsonb->'table'`). FerretDB pushes equality
# filters down as `_jsonb->'field' @> value`, which a GIN index on that expression serves.
# FerretDB never uses its own indexes for reads, so these are what makes lookups fast.
GIN_FILE="$HERE/gin-indexes.txt"

cmd_gin_indexes() {
  if [[ $DB_BACKEND != postgresql ]]; then
    log "gin-indexes: nothing to do with the $DB_BACKEND backend"
    return 0
  fi
  postgres_pid >/dev/null || die "postgresql is not running: '$0 start' first"

  # "collection field" pairs from the file, comments and blank lines dropped.
  local pairs="" line coll field rest
  if [[ -f $GIN_FILE ]]; then
    while IFS= read -r line || [[ -n $line ]]; do
      line="${line%%#*}"
      read -r coll field rest <<<"$line" || true
      [[ -z ${coll:-} ]] && continue
      [[ -n ${field:-} && -z ${rest:-} ]] || die "$GIN_FILE: expected 'collection field', got '$line'"
      [[ $field == *.* ]] && die "$GIN_FILE: '$field': only top-level fields are supported"
      pairs+="$coll $field"$'\n'
    done <"$GIN_FILE"
  fi

  if [[ "$(pg_psql "$PG_DB" -tAc "SELECT to_regclass('$MONGO_DB._ferretdb_database_metadata') IS NOT NULL")" != t ]]; then
    log "gin-indexes: database '$MONGO_DB' has no collections yet; nothing to index"
    return 0
  fi

  # One CREATE INDEX IF NOT EXISTS per (table, field), executed by \gexec. Index names are
  # deterministic: kazpost_gin_<table>_<field>, or, when that is not a plain lower-case
  # identifier of at most 63 bytes, a shortened form ending in a hash of table and field.
  pg_psql "$PG_DB" -tA -v schema="$MONGO_DB" -v pairs="$pairs" <<'SQL'
SET client_min_messages = warning;
WITH meta AS (
  SELECT _jsonb->>'_id' AS coll, _jsonb->>'table' AS tbl
  FROM :"schema"._ferretdb_database_metadata
), extra AS (
  SELECT split_part(l, ' ', 1) AS coll, split_part(l, ' ', 2) AS field
  FROM regexp_split_to_table(:'pairs', E'\n') AS l
  WHERE l <> ''
), wanted AS (
  SELECT tbl, '_id' AS field FROM meta
  UNION
  SELECT m.tbl, e.field FROM extra e JOIN meta m USING (coll)
), named AS (
  SELECT tbl, field,
         CASE WHEN length('kazpost_gin_' || tbl || '_' || field) <= 63
                   AND field ~ '^[a-z0-9_]+$' AND tbl ~ '^[a-z0-9_]+$'
              THEN 'kazpost_gin_' || tbl || '_' || field
              ELSE left('kazpost_gin_' || regexp_replace(lower(tbl || '_' || field), '[^a-z0-9_]', '_', 'g'), 54)
                   || '_' || left(md5(tbl || '/' || field), 8)
         END AS idx
  FROM wanted
)
SELECT format('CREATE INDEX IF NOT EXISTS %I ON %I.%I USING gin ((_jsonb -> %L))',
              idx, :'schema', tbl, field)
FROM named ORDER BY tbl, field
\gexec

-- Report: what exists now, and listed collections that do not exist yet.
SELECT 'index ' || i.indexname || ' on ' || i.tablename || ' (' || coalesce(m._jsonb->>'_id', '?') || ')'
FROM pg_indexes i
LEFT JOIN :"schema"._ferretdb_database_metadata m ON m._jsonb->>'table' = i.tablename
WHERE i.schemaname = :'schema' AND i.indexname LIKE 'kazpost_gin_%'
ORDER BY 1;
SELECT DISTINCT 'skipped: collection ' || e.coll || ' does not exist yet'
FROM (SELECT split_part(l, ' ', 1) AS coll FROM regexp_split_to_table(:'pairs', E'\n') AS l WHERE l <> '') e
WHERE NOT EXISTS (SELECT 1 FROM :"schema"._ferretdb_database_metadata m WHERE m._jsonb->>'_id' = e.coll);
SQL
}


# ---------------------------------------------------------------------------------------------
# restart-kafka / restart-db (fault suite: tests/chaos)
# ---------------------------------------------------------------------------------------------
# parse_restart_args ARGS...: sets RESTART_KILL (0/1), RESTART_DOWN (seconds), RESTART_FERRETDB_ONLY.
parse_restart_args() {
  RESTART_KILL=0 RESTART_DOWN=0 RESTART_FERRETDB_ONLY=0
  while (($#)); do
    case "$1" in
      --kill) RESTART_KILL=1 ;;
      --down) shift; RESTART_DOWN="${1:?--down needs seconds}" ;;
      --ferretdb-only) RESTART_FERRETDB_ONLY=1 ;;
      *) die "unknown option '$1'" ;;
    esac
    shift
  done
  [[ $RESTART_DOWN =~ ^[0-9]+([.][0-9]+)?$ ]] || die "--down takes seconds, not '$RESTART_DOWN'"
}

kill_now() { # kill_now NAME PID — SIGKILL and wait until the process is gone
  local i
  kill -KILL "$2" 2>/dev/null || true
  for ((i = 0; i < 300; i++)); do kill -0 "$2" 2>/dev/null || break; sleep 0.1; done
  rm -f "$PIDS/$1.pid"
  log "$1 (pid $2) killed"
}

cmd_restart_kafka() {
  parse_restart_args "$@"
  require_installed
  mkdir -p "$LOGS" "$PIDS"
  lock "$STATE/.stack.lock"
  local pid
  pid="$(kafka_pid)" || die "kafka is not running: '$0 start' first"
  if ((RESTART_KILL)); then
    kill_now kafka "$pid"
    finish_kafka_cds killed
  elif terminate kafka "$pid" 60; then
    finish_kafka_cds clean
  else
    finish_kafka_cds killed
  fi
  sleep "$RESTART_DOWN"
  start_kafka
  wait_kafka_ready $(($(date +%s) + START_TIMEOUT))
  log "kafka back on 127.0.0.1:$KAFKA_PORT"
}

cmd_restart_db() {
  parse_restart_args "$@"
  require_installed
  mkdir -p "$LOGS" "$PIDS"
  lock "$STATE/.stack.lock"
  local pid
  pid="$(ferretdb_pid)" || die "ferretdb is not running: '$0 start' first"
  if ((RESTART_KILL)); then kill_now ferretdb "$pid"; else terminate ferretdb "$pid" 30 || true; fi
  if [[ $DB_BACKEND == postgresql ]] && ((!RESTART_FERRETDB_ONLY)); then
    if [[ -f $PG_DATA/postmaster.pid ]] && as_pg "$PGBIN/pg_ctl" status -D "$PG_DATA" >/dev/null 2>&1; then
      # immediate = no shutdown checkpoint: the next start replays the WAL, as after a crash.
      as_pg "$PGBIN/pg_ctl" stop -D "$PG_DATA" -m "$( ((RESTART_KILL)) && echo immediate || echo fast)" -w -t 60 -s &&
        log "postgresql stopped$( ((RESTART_KILL)) && echo ' (immediate)')"
    fi
    rm -f "$PIDS/postgres.pid"
  fi
  sleep "$RESTART_DOWN"
  if [[ $DB_BACKEND == postgresql ]]; then start_postgres; ensure_pg_database; fi
  start_ferretdb
  wait_db_ready $(($(date +%s) + START_TIMEOUT))
  log "database back on 127.0.0.1:$MONGO_PORT"
}

cmd_gin_indexes_db() { # cmd_gin_indexes_db DATABASE — gin-indexes for a database other than kazpost
  [[ ${1:-} =~ ^[a-z0-9_]{1,63}$ ]] || die "gin-indexes-db needs a database name of [a-z0-9_], not '${1:-}'"
  local MONGO_DB="$1"   # dynamic scope: cmd_gin_indexes reads this one
  cmd_gin_indexes
}

# ---------------------------------------------------------------------------------------------
usage() { # the header comment of this file
  awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "${BASH_SOURCE[0]}"
}

case "${1:-}" in
  install) cmd_install ;;
  start) cmd_start ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  gin-indexes) cmd_gin_indexes ;;
  pause-db) cmd_signal_db STOP ;;
  resume-db) cmd_signal_db CONT ;;
  restart-kafka) shift; cmd_restart_kafka "$@" ;;
  restart-db) shift; cmd_restart_db "$@" ;;
  gin-indexes-db) shift; cmd_gin_indexes_db "$@" ;;
  env) cmd_env ;;
  -h | --help | help) usage ;;
  *) usage >&2; exit 2 ;;
esac
