# syntax=docker/dockerfile:1.7
#
# The official Apache Kafka image plus Cruise Control's metrics reporter, which
# each broker loads through metric.reporters to publish the load samples
# Cruise Control plans with.
#
# The jar comes from the Cruise Control image (cruise-control/Dockerfile), so
# reporter and server are always the same tag. Compose supplies that image as
# the named build context "cruise-control" (additional_contexts:
# service:cruise-control). Building by hand:
#
#   docker build -t kchat/cruise-control:2.5.146 cruise-control/
#   docker build --build-context cruise-control=docker-image://kchat/cruise-control:2.5.146 \
#     -f deploy/docker/kafka-broker.Dockerfile -t kchat/kafka-broker:4.0.2 deploy/docker

ARG KAFKA_IMAGE=apache/kafka:4.0.2

# "cruise-control" is resolved from the named build context; there is no
# public image by that name, so a build without the context fails here.
FROM cruise-control AS cc-dist

FROM ${KAFKA_IMAGE}
ARG CRUISE_CONTROL_VERSION=2.5.146
LABEL org.opencontainers.image.title="kafka-broker" \
      org.opencontainers.image.description="apache/kafka with the Cruise Control ${CRUISE_CONTROL_VERSION} metrics reporter"
# /opt/kafka/libs is on the broker's classpath (kafka-run-class.sh adds libs/*).
COPY --from=cc-dist --chown=appuser:appuser /opt/cruise-control/metrics-reporter/ /opt/kafka/libs/
# The Prometheus JMX exporter agent the brokers load through KAFKA_OPTS (docker-compose.yml);
# the same release the local stack fetches (deploy/localstack/maven/jmx-exporter-pom.xml).
ARG JMX_EXPORTER_VERSION=1.0.1
ADD --chown=appuser:appuser \
    --checksum=sha256:7d61f737fd661610ccc14aea79764faa1ea94a340cbc8f0029b3d2edea3d80c1 \
    https://repo1.maven.org/maven2/io/prometheus/jmx/jmx_prometheus_javaagent/${JMX_EXPORTER_VERSION}/jmx_prometheus_javaagent-${JMX_EXPORTER_VERSION}.jar \
    /opt/jmx-exporter/jmx_prometheus_javaagent.jar
# The secured stack's start: the admin login from the secrets volume, SCRAM users added
# when the storage is formatted, then the image's own /etc/kafka/docker/run (see the
# script). Setting ENTRYPOINT clears the base image's CMD (/etc/kafka/docker/run), which
# the script would otherwise pass to run as arguments; CMD [] says so explicitly.
COPY --chmod=0755 kafka-secure-entrypoint.sh /opt/kchat/kafka-secure-entrypoint.sh
ENTRYPOINT ["/opt/kchat/kafka-secure-entrypoint.sh"]
CMD []
