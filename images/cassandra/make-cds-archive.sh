#!/bin/bash
# Run once while the image is built (scripts/build-images): start a test node with the class list
# recorded, stop it once it serves CQL, and archive those classes (AppCDS, JDK 17). The entrypoint then
# maps the archive instead of loading and verifying ~9,700 classes from jars: about 1 s less per start
# on 2 cores. Leaves no data behind; without the archive the node starts as before.
set -u
ARCHIVE=/opt/cassandra/cassandra.jsa
LIST=/tmp/cassandra-classes.lst
LOG=/tmp/cassandra-cds-run.log
rm -f "$ARCHIVE"
JVM_OPTS="-XX:DumpLoadedClassList=$LIST" /usr/local/bin/cassandra-test-node >"$LOG" 2>&1 &
pid=$!
ready=0
for _ in $(seq 1200); do
  if grep -q "Starting listening for CQL clients" "$LOG"; then ready=1; break; fi
  kill -0 "$pid" 2>/dev/null || break
  sleep 0.1
done
sleep 2   # the first client's classes too
kill -TERM "$pid" 2>/dev/null; wait "$pid"
status=1
if [ "$ready" = 1 ]; then
  java -Xshare:dump -XX:SharedClassListFile="$LIST" -XX:SharedArchiveFile="$ARCHIVE" \
    -cp "/opt/cassandra/lib/*" >/tmp/cassandra-cds-dump.log 2>&1 && status=0
fi
[ "$status" = 0 ] || { echo "make-cds-archive: no archive (node ready: $ready)"; tail -5 "$LOG" /tmp/cassandra-cds-dump.log 2>/dev/null; rm -f "$ARCHIVE"; }
rm -rf /var/lib/cassandra/* /var/log/cassandra/* "$LIST" "$LOG" /tmp/cassandra-cds-dump.log
exit "$status"
