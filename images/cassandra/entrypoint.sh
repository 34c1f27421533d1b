#!/bin/bash
# Starts Apache Cassandra as a fast-starting test node: a single node unless CASSANDRA_SEEDS is set.
# Honours MAX_HEAP_SIZE, HEAP_NEWSIZE and JVM_OPTS like the official image,
# CASSANDRA_AUTHENTICATOR / CASSANDRA_AUTHORIZER for tests that need auth, and
# CASSANDRA_EXTRA_YAML (lines appended to cassandra.yaml, e.g. guardrails).
# Clusters: the official image's CASSANDRA_SEEDS, CASSANDRA_LISTEN_ADDRESS, CASSANDRA_BROADCAST_ADDRESS
# (both may be "auto": the container's IP), CASSANDRA_RPC_ADDRESS, CASSANDRA_BROADCAST_RPC_ADDRESS,
# CASSANDRA_CLUSTER_NAME, CASSANDRA_NUM_TOKENS, CASSANDRA_DC, CASSANDRA_RACK, CASSANDRA_ENDPOINT_SNITCH;
# and this image's own CASSANDRA_INITIAL_TOKEN (the node's token(s), for deterministic rings). With
# CASSANDRA_SEEDS, the node listens on its container IP and joins without bootstrapping (fresh test clusters).
set -euo pipefail

CASSANDRA_HOME=/opt/cassandra
CONF_DIR=/etc/cassandra
DATA_DIR=/var/lib/cassandra
MAX_HEAP_SIZE=${MAX_HEAP_SIZE:-512M}
HEAP_NEWSIZE=${HEAP_NEWSIZE:-128M}
CONTAINER_IP=$(hostname -i | awk '{print $1}')

auto_ip() { if [ "$1" = auto ]; then echo "$CONTAINER_IP"; else echo "$1"; fi; }
CLUSTER=0
[ -z "${CASSANDRA_SEEDS:-}" ] || CLUSTER=1
if [ $CLUSTER = 1 ]; then LISTEN_DEFAULT=$CONTAINER_IP; else LISTEN_DEFAULT=127.0.0.1; fi
LISTEN_ADDRESS=$(auto_ip "${CASSANDRA_LISTEN_ADDRESS:-$LISTEN_DEFAULT}")
BROADCAST_ADDRESS=$(auto_ip "${CASSANDRA_BROADCAST_ADDRESS:-$LISTEN_ADDRESS}")
NUM_TOKENS=${CASSANDRA_NUM_TOKENS:-1}
# Seeds: as in the official image, the node itself when none are given; each gets the storage port.
SEEDS=""
IFS=, read -ra SEED_LIST <<<"${CASSANDRA_SEEDS:-$BROADCAST_ADDRESS}"
for seed in "${SEED_LIST[@]}"; do
  seed=${seed//[[:space:]]/}
  [ -n "$seed" ] || continue
  [[ $seed == *:* ]] || seed=$seed:7000
  SEEDS=${SEEDS:+$SEEDS,}$seed
done
SNITCH=SimpleSnitch
[ -z "${CASSANDRA_DC:-}${CASSANDRA_RACK:-}" ] || SNITCH=GossipingPropertyFileSnitch
SNITCH=${CASSANDRA_ENDPOINT_SNITCH:-$SNITCH}

mkdir -p "$CONF_DIR" "$DATA_DIR"
cat >"$CONF_DIR/cassandra.yaml" <<YAML
cluster_name: ${CASSANDRA_CLUSTER_NAME:-Test Cluster}
num_tokens: ${NUM_TOKENS}
allocate_tokens_for_local_replication_factor: 1
partitioner: org.apache.cassandra.dht.Murmur3Partitioner
endpoint_snitch: ${SNITCH}
seed_provider:
  - class_name: org.apache.cassandra.locator.SimpleSeedProvider
    parameters:
      - seeds: "${SEEDS}"
listen_address: ${LISTEN_ADDRESS}
rpc_address: ${CASSANDRA_RPC_ADDRESS:-0.0.0.0}
broadcast_rpc_address: $(auto_ip "${CASSANDRA_BROADCAST_RPC_ADDRESS:-$CONTAINER_IP}")
start_native_transport: true
native_transport_port: 9042
data_file_directories: [${DATA_DIR}/data]
commitlog_directory: ${DATA_DIR}/commitlog
hints_directory: ${DATA_DIR}/hints
saved_caches_directory: ${DATA_DIR}/saved_caches
cdc_raw_directory: ${DATA_DIR}/cdc_raw
commitlog_sync: periodic
commitlog_sync_period: 10000ms
authenticator: ${CASSANDRA_AUTHENTICATOR:-AllowAllAuthenticator}
authorizer: ${CASSANDRA_AUTHORIZER:-AllowAllAuthorizer}
role_manager: CassandraRoleManager
# Test nodes: TRUNCATE and DROP must be cheap, nothing needs a snapshot.
auto_snapshot: false
snapshot_before_compaction: false
YAML
if [ -n "${CASSANDRA_BROADCAST_ADDRESS:-}" ]; then
  echo "broadcast_address: ${BROADCAST_ADDRESS}" >>"$CONF_DIR/cassandra.yaml"
fi
if [ $CLUSTER = 1 ]; then
  # A fresh test cluster: no data to stream, each node takes its tokens at once.
  echo "auto_bootstrap: false" >>"$CONF_DIR/cassandra.yaml"
fi
if [ -n "${CASSANDRA_DC:-}${CASSANDRA_RACK:-}" ] || [[ $SNITCH == *GossipingPropertyFileSnitch ]]; then
  printf 'dc=%s\nrack=%s\n' "${CASSANDRA_DC:-dc1}" "${CASSANDRA_RACK:-rack1}" >"$CONF_DIR/cassandra-rackdc.properties"
fi
if [ -n "${CASSANDRA_EXTRA_YAML:-}" ]; then
  printf '%s\n' "$CASSANDRA_EXTRA_YAML" >>"$CONF_DIR/cassandra.yaml"
fi

# JPMS flags Cassandra 5.0 needs on Java 17 (its conf/jvm17-server.options).
JPMS_OPTS=(
  -Djdk.attach.allowAttachSelf=true
  --add-exports java.base/jdk.internal.misc=ALL-UNNAMED
  --add-exports java.management.rmi/com.sun.jmx.remote.internal.rmi=ALL-UNNAMED
  --add-exports java.rmi/sun.rmi.registry=ALL-UNNAMED
  --add-exports java.rmi/sun.rmi.server=ALL-UNNAMED
  --add-exports java.sql/java.sql=ALL-UNNAMED
  --add-exports java.base/java.lang.ref=ALL-UNNAMED
  --add-exports jdk.unsupported/sun.misc=ALL-UNNAMED
  --add-exports jdk.compiler/com.sun.tools.javac.file=ALL-UNNAMED
  --add-exports jdk.attach/sun.tools.attach=ALL-UNNAMED
  --add-opens java.base/java.lang.module=ALL-UNNAMED
  --add-opens java.base/jdk.internal.loader=ALL-UNNAMED
  --add-opens java.base/jdk.internal.ref=ALL-UNNAMED
  --add-opens java.base/jdk.internal.reflect=ALL-UNNAMED
  --add-opens java.base/jdk.internal.math=ALL-UNNAMED
  --add-opens java.base/jdk.internal.module=ALL-UNNAMED
  --add-opens java.base/jdk.internal.util.jar=ALL-UNNAMED
  --add-opens jdk.management/com.sun.management.internal=ALL-UNNAMED
  --add-opens java.base/sun.nio.ch=ALL-UNNAMED
  --add-opens java.base/java.io=ALL-UNNAMED
  --add-opens java.base/java.lang.reflect=ALL-UNNAMED
  --add-opens java.base/java.lang=ALL-UNNAMED
  --add-opens java.base/java.util=ALL-UNNAMED
  -Dio.netty.tryReflectionSetAccessible=true
)
# The node's token: CASSANDRA_INITIAL_TOKEN, else 0 on a single node with one token (a cluster's nodes
# pick theirs when none is given).
TOKEN_OPTS=()
if [ -n "${CASSANDRA_INITIAL_TOKEN:-}" ]; then
  TOKEN_OPTS=(-Dcassandra.initial_token="$CASSANDRA_INITIAL_TOKEN")
elif [ $CLUSTER = 0 ] && [ "$NUM_TOKENS" = 1 ]; then
  TOKEN_OPTS=(-Dcassandra.initial_token=0)
fi
# A single node needs no ring delay and no saved ring state. A cluster's nodes keep both: with no ring
# delay a node whose seed is not gossiping yet gives up at once ("Unable to gossip with any peers"), and
# a restarted node learns its peers from the saved ring.
RING_OPTS=(-Dcassandra.ring_delay_ms=0 -Dcassandra.load_ring_state=false)
[ $CLUSTER = 0 ] || RING_OPTS=()
# A test node: no gossip settle wait, no superuser delay;
# a small heap and the C1 compiler only, which start faster on small machines; the memtable row
# overhead estimated from 100 rows, not 100,000 (2.1 s of every start on 2 cores); the system keyspaces
# written without fsync (cassandra.unsafesystem: the data is disposable), which makes the start ~0.5 s
# shorter and each CREATE KEYSPACE / TABLE ~3x faster (~100 -> ~35 ms here).
TEST_NODE_OPTS=(
  -Xms"$MAX_HEAP_SIZE" -Xmx"$MAX_HEAP_SIZE" -Xmn"$HEAP_NEWSIZE"
  -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Xss256k
  -Djava.net.preferIPv4Stack=true
  -Dcassandra-foreground=yes
  -Dcassandra.config=file://$CONF_DIR/cassandra.yaml
  -Dcassandra.storagedir=$DATA_DIR
  -Dcassandra.logdir=/var/log/cassandra
  -Dlogback.configurationFile=$CONF_DIR/logback.xml
  -Dcassandra.skip_wait_for_gossip_to_settle=0
  "${RING_OPTS[@]}"
  -Dcassandra.superuser_setup_delay_ms=0
  "${TOKEN_OPTS[@]}"
  -Dcassandra.memtable_row_overhead_computation_step=100
  -Dcassandra.unsafesystem=true
)
# The class-data sharing archive made at image build (make-cds-archive.sh), when there is one. CDS wants
# jars only at the head of the class path, so the configuration directory comes last.
CDS_OPTS=()
if [ -f "$CASSANDRA_HOME/cassandra.jsa" ]; then
  CDS_OPTS=(-XX:SharedArchiveFile="$CASSANDRA_HOME/cassandra.jsa" -Xshare:auto -Xlog:cds=off -Xlog:cds+dynamic=off)
fi
# shellcheck disable=SC2206  # JVM_OPTS is a space-separated list, as in the official image
EXTRA_OPTS=(${JVM_OPTS:-})
exec java "${CDS_OPTS[@]}" "${JPMS_OPTS[@]}" "${TEST_NODE_OPTS[@]}" "${EXTRA_OPTS[@]}" \
  -cp "$CASSANDRA_HOME/lib/*:$CONF_DIR" org.apache.cassandra.service.CassandraDaemon
