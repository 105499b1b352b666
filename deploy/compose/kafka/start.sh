#!/usr/bin/env bash
# Entrypoint of the `kafka` service of docker-compose.yml (image apache/kafka).
# Formats the storage on first start with the admin user's SCRAM credentials (the broker's own
# identity and the only super user besides the loopback controller), then runs the broker.
# kafka-setup (setup.sh) creates every other user and its ACLs through this admin user.
set -euo pipefail
: "${CLUSTER_ID:?set KAFKA_CLUSTER_ID}"
: "${KAFKA_ADMIN_PASSWORD:?set KAFKA_ADMIN_PASSWORD}"
if [[ ! $KAFKA_ADMIN_PASSWORD =~ ^[A-Za-z0-9._~-]{16,}$ ]]; then
  echo "KAFKA_ADMIN_PASSWORD: use 16 or more letters, digits or . _ ~ - (e.g. openssl rand -hex 24)" >&2
  exit 2
fi
conf=/tmp/kazpost-kafka.properties
cp /etc/kazpost/kafka/server.properties "$conf"
jaas="org.apache.kafka.common.security.scram.ScramLoginModule required username=\"admin\" password=\"$KAFKA_ADMIN_PASSWORD\";"
printf 'listener.name.sasl_plaintext.scram-sha-512.sasl.jaas.config=%s\n' "$jaas" >>"$conf"
# The same credentials for the health check's client.
printf 'security.protocol=SASL_PLAINTEXT\nsasl.mechanism=SCRAM-SHA-512\nsasl.jaas.config=%s\n' "$jaas" >/tmp/admin.properties
chmod 600 "$conf" /tmp/admin.properties
/opt/kafka/bin/kafka-storage.sh format --cluster-id "$CLUSTER_ID" --config "$conf" --ignore-formatted \
  --add-scram "SCRAM-SHA-512=[name=admin,password=$KAFKA_ADMIN_PASSWORD]"
exec /opt/kafka/bin/kafka-server-start.sh "$conf"
