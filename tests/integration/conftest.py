import itertools
import os
import shutil

import pytest

from harness import (PG_BINDIRS, Cluster, WalE, gcs_create_bucket, gcs_env, make_scratch, s3_create_bucket, s3_env, swift_create_container, swift_env,
                     wabs_create_container, wabs_env)

# PostgreSQL listens only on a Unix socket in its own scratch directory; the port still names the
# socket and seeds the shared-memory key, so each pytest-xdist worker counts in its own range.
_worker = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").lstrip("gw") or 0)
_ports = itertools.count(20000 + _worker * 1000)


@pytest.fixture
def scratch():
    d = make_scratch()
    yield d
    if os.environ.get("WALE_KEEP_SCRATCH") != "1":
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def wale(scratch):
    return WalE(scratch)


@pytest.fixture
def archive(scratch):
    """A file:// prefix in the scratch dir, and its directory."""
    d = os.path.join(scratch, "archive")
    return "file://localhost" + d, d


@pytest.fixture(params=sorted(PG_BINDIRS), ids=lambda v: f"pg{v}")
def pg_version(request):
    if not os.path.exists(os.path.join(PG_BINDIRS[request.param], "postgres")):
        pytest.fail(f"PostgreSQL {request.param} binaries missing at {PG_BINDIRS[request.param]}; run scripts/test.sh")
    return request.param


@pytest.fixture
def make_cluster(scratch):
    made = []

    def make(version, name="primary"):
        c = Cluster(version, scratch, next(_ports), name)
        made.append(c)
        return c

    yield make
    for c in made:
        c.stop("immediate")


_buckets = itertools.count()


@pytest.fixture
def s3_prefix():
    """A fresh bucket on the test S3 server (SeaweedFS), as an s3:// prefix."""
    if s3_env() is None:
        pytest.fail("no test S3 server: run the tests through scripts/test.sh (it starts SeaweedFS)")
    bucket = f"wale-it-{os.getpid()}-{next(_buckets)}"
    s3_create_bucket(bucket)
    return f"s3://{bucket}/pg"


@pytest.fixture
def wabs_prefix():
    """A fresh container on the test Azure Blob emulator, as a wabs:// prefix."""
    if wabs_env() is None:
        pytest.fail("no test Azure Blob server: run the tests through scripts/test.sh (it starts the emulator)")
    container = f"wale-it-{os.getpid()}-{next(_buckets)}"
    wabs_create_container(container)
    return f"wabs://{container}/pg"


@pytest.fixture
def swift_prefix():
    """A fresh container on the test OpenStack Swift (SAIO), as a swift:// prefix."""
    if swift_env() is None:
        pytest.fail("no test Swift server: run the tests through scripts/test.sh (it starts a SAIO)")
    container = f"wale-it-{os.getpid()}-{next(_buckets)}"
    swift_create_container(container)
    return f"swift://{container}/pg"


@pytest.fixture
def gcs_prefix():
    """A fresh bucket on the test GCS (fake-gcs-server), as a gs:// prefix."""
    if gcs_env() is None:
        pytest.fail("no test GCS server: run the tests through scripts/test.sh (it starts fake-gcs-server)")
    bucket = f"wale-it-{os.getpid()}-{next(_buckets)}"
    gcs_create_bucket(bucket)
    return f"gs://{bucket}/pg"
