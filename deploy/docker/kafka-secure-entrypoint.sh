#!/usr/bin/env bash
# Entrypoint of kchat's broker image (kafka-broker.Dockerfile): the secured compose
# stack's additions, then the apache/kafka image's own start (/etc/kafka/docker/run).
#
# 1. Logins that need the admin password, which only exists in the secrets volume
#    (written by `chatctl kafka-secrets`, docker-compose.yml's kafka-secrets job): the
#    inter-broker listener's JAAS config and the Cruise Control metrics reporter's. They
#    are exported as KAFKA_* variables, which the image turns into server.properties
#    lines like every other KAFKA_* variable.
# 2. SCRAM users at format time. The image formats an empty data directory itself
#    (KafkaDockerWrapper setup) but cannot add SCRAM credentials, and the inter-broker
#    user must exist before the first broker accepts a login. So on a node whose storage
#    is not formatted yet this script formats it first, with the same server.properties
#    the image would write (every KAFKA_* variable, mapped by the image's rule) and one
#    --add-scram per password file. The image's own format then finds the directory
#    formatted, which its launch script accepts ("already formatted").
#
# Later starts skip step 2: the credentials live in the metadata log from then on, and
# are changed with kafka-configs.sh (docs/operations.md, "Docker Compose").
set -euo pipefail

secrets="${KCHAT_KAFKA_SECRETS:-/etc/kchat/kafka-secrets}"
admin_file="$secrets/scram/admin"
if [[ ! -r "$admin_file" ]]; then
  echo "kafka-secure-entrypoint: $admin_file is missing or unreadable; the kafka-secrets job writes it (docker compose logs kafka-secrets)" >&2
  exit 1
fi
admin_password="$(tr -d '\r\n' < "$admin_file")"
admin_jaas="org.apache.kafka.common.security.scram.ScramLoginModule required username=\"admin\" password=\"$admin_password\";"

# listener.name.internal.scram-sha-512.sasl.jaas.config: the broker's server login on the
# INTERNAL listener and its client login to the other brokers (inter-broker listener).
export KAFKA_LISTENER_NAME_INTERNAL_SCRAM___SHA___512_SASL_JAAS_CONFIG="$admin_jaas"
# cruise.control.metrics.reporter.sasl.jaas.config: the reporter's producer.
export KAFKA_CRUISE_CONTROL_METRICS_REPORTER_SASL_JAAS_CONFIG="$admin_jaas"

# The image's rule from KAFKA_* variable to property (KafkaDockerWrapper): drop "KAFKA_",
# lower-case, "_" -> ".", then "..." -> "-" and ".." -> "_"; the launcher's own variables
# are not properties.
render_properties() {
  local name key
  for name in $(compgen -e); do
    [[ $name == KAFKA_* ]] || continue
    case "$name" in
      KAFKA_VERSION|KAFKA_HEAP_OPTS|KAFKA_LOG4J_OPTS|KAFKA_OPTS|KAFKA_JMX_OPTS|KAFKA_JVM_PERFORMANCE_OPTS|\
      KAFKA_GC_LOG_OPTS|KAFKA_LOG4J_ROOT_LOGLEVEL|KAFKA_LOG4J_LOGGERS|KAFKA_TOOLS_LOG4J_LOGLEVEL|KAFKA_JMX_HOSTNAME)
        continue ;;
    esac
    key="${name//KAFKA_/}"
    key="${key,,}"
    key="${key//_/.}"
    key="${key//.../-}"
    key="${key//../_}"
    printf '%s=%s\n' "$key" "${!name}"
  done
}

data_dir="${KAFKA_LOG_DIRS:-/var/lib/kafka/data}"
if [[ -n "${KAFKA_PROCESS_ROLES:-}" && ! -e "$data_dir/meta.properties" ]]; then
  : "${CLUSTER_ID:?CLUSTER_ID must be set}"
  props="$(mktemp)"
  trap 'rm -f "$props"' EXIT
  render_properties > "$props"
  scram=()
  for f in "$secrets"/scram/*; do
    user="$(basename "$f")"
    scram+=(--add-scram "SCRAM-SHA-512=[name=$user,password=$(tr -d '\r\n' < "$f")]")
  done
  echo "kafka-secure-entrypoint: formatting $data_dir with SCRAM-SHA-512 users: $(cd "$secrets/scram" && echo *)"
  # KAFKA_OPTS is cleared: it loads the JMX exporter agent, whose port the broker needs.
  KAFKA_OPTS='' /opt/kafka/bin/kafka-storage.sh format --cluster-id "$CLUSTER_ID" -c "$props" "${scram[@]}"
  rm -f "$props"
  trap - EXIT
fi

exec /etc/kafka/docker/run "$@"
