#!/usr/bin/env bash
# One-shot `kafka-setup` service of docker-compose.yml (image apache/kafka), run on every `up`:
# creates or updates the SCRAM-SHA-512 users and their ACLs (both idempotent), as the admin user.
#
#   one principal per upstream source: Write (and Describe) on the upstream topic, nothing else;
#   one principal per service: Read on what it consumes (and its consumer group), Write on what
#   it produces (its events and its dead-letter topic);
#   `operator` (kazpost init / publish / dlq / status): the KazPost topics and consumer groups.
#
# Passwords come from the environment (see deploy/compose/.env.example).
set -euo pipefail
BOOTSTRAP=kafka:9092
: "${KAFKA_ADMIN_PASSWORD:?}"
cfg=/tmp/admin.properties
printf 'security.protocol=SASL_PLAINTEXT\nsasl.mechanism=SCRAM-SHA-512\nsasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="admin" password="%s";\n' \
  "$KAFKA_ADMIN_PASSWORD" >"$cfg"
chmod 600 "$cfg"

check_password() { # check_password NAME VALUE
  [[ $2 =~ ^[A-Za-z0-9._~-]{16,}$ ]] ||
    { echo "password of $1: use 16 or more letters, digits or . _ ~ - (e.g. openssl rand -hex 24)" >&2; exit 2; }
}
user() { # user NAME PASSWORD
  check_password "$1" "$2"
  /opt/kafka/bin/kafka-configs.sh --bootstrap-server "$BOOTSTRAP" --command-config "$cfg" --alter \
    --entity-type users --entity-name "$1" --add-config "SCRAM-SHA-512=[iterations=8192,password=$2]" >/dev/null
  echo "user $1"
}
acl() { /opt/kafka/bin/kafka-acls.sh --bootstrap-server "$BOOTSTRAP" --command-config "$cfg" --add --force "$@" >/dev/null; }
produces() { # produces PRINCIPAL TOPIC...
  local p=$1; shift
  for t in "$@"; do acl --allow-principal "User:$p" --operation Write --operation Describe --topic "$t"; done
}
consumes() { # consumes PRINCIPAL GROUP|- TOPIC...
  local p=$1 g=$2; shift 2
  for t in "$@"; do acl --allow-principal "User:$p" --operation Read --operation Describe --topic "$t"; done
  [[ $g == - ]] || acl --allow-principal "User:$p" --operation Read --group "$g"
}

UPSTREAM=upstream.articles UPSTREAM_DLQ=upstream.articles.dlq
INGESTED=articles.ingested INGESTED_DLQ=articles.ingested.dlq
STORED=articles.stored STORED_DLQ=articles.stored.dlq
LINKED=articles.linked NARRATED=articles.narrated
NEWSLETTER=newsletter.requests NEWSLETTER_DLQ=newsletter.requests.dlq
ALL_TOPICS=("$UPSTREAM" "$UPSTREAM_DLQ" "$INGESTED" "$INGESTED_DLQ" "$STORED" "$STORED_DLQ" "$LINKED" "$NARRATED"
            "$NEWSLETTER" "$NEWSLETTER_DLQ")

user ingestion "${KAFKA_INGESTION_PASSWORD:?}"
consumes ingestion kazpost-ingestion "$UPSTREAM"
produces ingestion "$INGESTED" "$UPSTREAM_DLQ"

user storage "${KAFKA_STORAGE_PASSWORD:?}"
consumes storage kazpost-storage "$INGESTED"
produces storage "$STORED" "$INGESTED_DLQ"

user linking "${KAFKA_LINKING_PASSWORD:?}"
consumes linking kazpost-linking "$STORED"   # the group, and the index follower (no group)
produces linking "$LINKED" "$STORED_DLQ"

user narration "${KAFKA_NARRATION_PASSWORD:?}"
consumes narration kazpost-narration "$STORED"
produces narration "$NARRATED" "$STORED_DLQ"

user newsletter "${KAFKA_NEWSLETTER_PASSWORD:?}"
consumes newsletter kazpost-newsletter "$NEWSLETTER"
produces newsletter "$NEWSLETTER_DLQ"

user gateway "${KAFKA_GATEWAY_PASSWORD:?}"
consumes gateway - "$STORED" "$LINKED" "$NARRATED"   # cache invalidation: no consumer group
produces gateway "$NEWSLETTER"

user operator "${KAFKA_OPERATOR_PASSWORD:?}"
for t in "${ALL_TOPICS[@]}"; do
  acl --allow-principal User:operator --operation All --topic "$t"
done
acl --allow-principal User:operator --operation All --group kazpost- --resource-pattern-type prefixed
acl --allow-principal User:operator --operation Describe --operation DescribeConfigs --cluster

# Upstream sources: "name:password" pairs separated by spaces; each becomes source-<name>.
for pair in ${KAFKA_UPSTREAM_SOURCES:-}; do
  name=${pair%%:*} password=${pair#*:}
  [[ $name =~ ^[a-z0-9-]{1,40}$ && $pair == *:* ]] ||
    { echo "KAFKA_UPSTREAM_SOURCES: expected name:password pairs (name: a-z, 0-9, -)" >&2; exit 2; }
  user "source-$name" "$password"
  produces "source-$name" "$UPSTREAM"
done
if [[ -n ${KAFKA_DEMO_SOURCE_PASSWORD:-} ]]; then  # the `demo` service (profile demo) publishes as source-demo
  user source-demo "$KAFKA_DEMO_SOURCE_PASSWORD"
  produces source-demo "$UPSTREAM"
fi
echo "kafka users and ACLs are in place"
