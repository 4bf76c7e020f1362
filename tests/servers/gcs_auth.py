#!/usr/bin/python3
"""Google's OAuth2 side for the tests, on 127.0.0.1, in front of fake-gcs-server (which accepts
any token or none).

* POST /token: the OAuth2 token endpoint. The JWT-bearer grant (RFC 7523) of a service account is
  checked as Google checks it: RS256 signature against the account's public key (with the openssl
  CLI), iss = the account's e-mail, aud = https://oauth2.googleapis.com/token (always that, as Google
  requires, wherever the assertion is posted), the devstorage scope, exp after now and
  at most an hour after iat. The refresh-token grant checks client id, secret and refresh token.
* GET /computeMetadata/v1/instance/service-accounts/default/token with `Metadata-Flavor: Google`:
  a Compute Engine metadata server.
* Every other request must carry `Authorization: Bearer <a token issued here and not revoked>`
  (401 otherwise, in GCS's error form) and is forwarded to fake-gcs-server.
* POST /_admin/revoke revokes every token (?after=N: once N more requests went through; with
  &bucket=B only requests for bucket B count, and only the tokens used on bucket B are revoked, so
  tests running beside it on the shared server neither use up its count nor lose their tokens);
  GET /_stats answers {"issued": N, "refused": N}; GET /_stats?bucket=B adds "tokens_used": the
  number of distinct tokens that made requests on bucket B.
* --open-port: the same proxy without the token check (what STORAGE_EMULATOR_HOST points at).

Resumable uploads as GCS runs them. fake-gcs-server appends every chunk it is sent and takes a
status query (`Content-Range: bytes */*`, no body) for "finish here", so a client that resumes
after a lost answer, as GCS's protocol says it must, gets its object finalized half-way or
duplicated. The proxy keeps each session itself (session URLs are rewritten to name the host the
client asked): a status query answers 308 with `Range: bytes=0-N` of what was
persisted (or the final answer again once complete), a chunk overlapping persisted bytes is
trimmed, a chunk that would leave a gap is refused (400), and requests on one session are
serialised, as on GCS.

It writes the credentials files the tests use into --dir: service-account.json (type
service_account, with the private key) and authorized-user.json.
"""
import argparse
import base64
import http.client
import json
import os
import re
import secrets
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

EMAIL = "wal-e-test@wal-e-test.iam.gserviceaccount.com"
CLIENT = ("wal-e-client-id", "wal-e-client-secret", "wal-e-refresh-token")
GOOGLE_TOKEN_URI = "https://oauth2.googleapis.com/token"
SCOPE = "https://www.googleapis.com/auth/devstorage.read_write"
TOKENS = set()
STATS = {"issued": 0, "refused": 0}
# POST /_admin/revoke?after=N[&bucket=B]: every token is revoked once N more requests (for bucket B)
# have been let through.
REVOKE_AFTER = [None]
REVOKE_BUCKET = [None]
SEEN = {}  # bucket -> tokens that made requests on it
LOCK = threading.Lock()


class Session:
    def __init__(self):
        self.lock = threading.Lock()
        self.persisted = 0
        self.final = None  # (status, headers, data) once the object is complete
        self.cancelled = False


SESSIONS = {}


def b64url_decode(s):
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def verify_rs256(signing_input, signature, public_pem):
    with tempfile.TemporaryDirectory() as d:
        sig, data = os.path.join(d, "sig"), os.path.join(d, "data")
        open(sig, "wb").write(signature)
        open(data, "wb").write(signing_input)
        r = subprocess.run(["openssl", "dgst", "-sha256", "-verify", public_pem, "-signature", sig, data], capture_output=True)
        return r.returncode == 0


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def answer(self, status, body, headers=()):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in headers:
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def body(self):
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def issue(self):
        token = "ya29." + secrets.token_urlsafe(24)
        with LOCK:
            TOKENS.add(token)
            STATS["issued"] += 1
        return self.answer(200, {"access_token": token, "expires_in": self.server.lifetime, "token_type": "Bearer"})

    def oauth_error(self, description):
        return self.answer(400, {"error": "invalid_grant", "error_description": description})

    def token(self, body):
        form = dict(urllib.parse.parse_qsl(body.decode()))
        grant = form.get("grant_type")
        if grant == "refresh_token":
            if (form.get("client_id"), form.get("client_secret"), form.get("refresh_token")) != CLIENT:
                return self.answer(401, {"error": "invalid_client", "error_description": "The OAuth client was not found."})
            return self.issue()
        if grant != "urn:ietf:params:oauth:grant-type:jwt-bearer":
            return self.answer(400, {"error": "unsupported_grant_type", "error_description": "Invalid grant_type: %s" % grant})
        parts = form.get("assertion", "").split(".")
        if len(parts) != 3:
            return self.oauth_error("Invalid JWT: not three parts")
        try:
            header, claims = json.loads(b64url_decode(parts[0])), json.loads(b64url_decode(parts[1]))
            signature = b64url_decode(parts[2])
        except Exception:
            return self.oauth_error("Invalid JWT: not base64url JSON")
        if header.get("alg") != "RS256":
            return self.oauth_error("Invalid JWT: alg must be RS256")
        if not verify_rs256((parts[0] + "." + parts[1]).encode(), signature, self.server.public_pem):
            return self.oauth_error("Invalid JWT Signature.")
        now = time.time()
        if claims.get("iss") != EMAIL:
            return self.oauth_error("Invalid JWT: unknown issuer")
        if claims.get("aud") != GOOGLE_TOKEN_URI:
            return self.oauth_error("Invalid JWT: aud must be %s" % GOOGLE_TOKEN_URI)
        if SCOPE not in str(claims.get("scope", "")).split():
            return self.oauth_error("Invalid JWT: scope")
        iat, exp = claims.get("iat", 0), claims.get("exp", 0)
        if not (exp > now - 30 and iat < now + 30 and 0 < exp - iat <= 3600):
            return self.oauth_error("Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe.")
        return self.issue()

    def forward(self, method):
        auth = self.headers.get("Authorization", "")
        body = self.body()
        with LOCK:
            ok = self.server.open or (auth.startswith("Bearer ") and auth[7:] in TOKENS)
            if not ok:
                STATS["refused"] += 1
            else:
                m = re.search(r"/b/([^/?]+)", self.path)
                bucket = m.group(1) if m else None
                if bucket and not self.server.open:
                    SEEN.setdefault(bucket, set()).add(auth[7:])
                if REVOKE_AFTER[0] is not None and (REVOKE_BUCKET[0] is None or bucket == REVOKE_BUCKET[0]):
                    REVOKE_AFTER[0] -= 1
                    if REVOKE_AFTER[0] <= 0:
                        REVOKE_AFTER[0] = None
                        if REVOKE_BUCKET[0] is None:
                            TOKENS.clear()
                        else:
                            TOKENS.difference_update(SEEN.get(REVOKE_BUCKET[0], set()))
        if not ok:
            return self.answer(401, {"error": {"code": 401, "message": "Invalid Credentials", "errors": [{"reason": "authError"}]}},
                               [("WWW-Authenticate", 'Bearer realm="https://accounts.google.com/"')])
        # Canonical names (Content-Range, not content-range as Python clients send it): the session
        # logic below reads and replaces them by name.
        headers = {k.title(): v for k, v in self.headers.items() if k.lower() not in ("host", "authorization", "connection")}
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
        uid = query.get("upload_id", [None])[0]
        if uid is not None and method in ("PUT", "DELETE"):
            with LOCK:
                session = SESSIONS.get(uid)
            if session is not None:
                with session.lock:
                    return self.session_request(method, session, body, headers)
        status, hdrs, data = self.upstream(method, self.path, body, headers)
        if method == "POST" and status == 200 and query.get("uploadType") == ["resumable"]:
            hdrs = [self.own_session(v) if k.lower() == "location" else (k, v) for k, v in hdrs]
        self.relay(method, status, hdrs, data)

    def own_session(self, url):
        """A new session: its URL names the host the client asked (this proxy, or a proxy in front
        of it), and this proxy keeps its state."""
        parts = urllib.parse.urlsplit(url)
        uid = urllib.parse.parse_qs(parts.query).get("upload_id", [None])[0]
        if uid is not None:
            with LOCK:
                SESSIONS[uid] = Session()
        return ("Location", urllib.parse.urlunsplit((parts.scheme, self.headers.get("Host") or "127.0.0.1:%d" % self.server.server_port, parts.path, parts.query, "")))

    def persisted_answer(self, session):
        extra = [("Range", "bytes=0-%d" % (session.persisted - 1))] if session.persisted else []
        return self.relay("PUT", 308, extra + [("Content-Type", "application/json")], b"")

    def session_request(self, method, session, body, headers):
        if session.final is not None and method == "PUT":
            return self.relay(method, *session.final)
        if session.cancelled:
            return self.answer(404, {"error": {"code": 404, "message": "No such upload session"}})
        if method == "DELETE":
            session.cancelled = True
            status, hdrs, data = self.upstream(method, self.path, body, headers)
            return self.relay(method, status, hdrs, data)
        m = re.fullmatch(r"bytes (\*|(\d+)-(\d+))/(\*|\d+)", headers.get("Content-Range", ""))
        if m is None:
            return self.answer(400, {"error": {"code": 400, "message": "bad Content-Range"}})
        total = None if m.group(4) == "*" else int(m.group(4))
        if m.group(1) == "*":
            if body or total != session.persisted:  # a status query
                return self.persisted_answer(session)
        else:
            start, end = int(m.group(2)), int(m.group(3))
            if len(body) != end - start + 1 or start > session.persisted:
                return self.answer(400, {"error": {"code": 400, "message": "chunk %d-%d does not continue the %d bytes persisted" % (start, end, session.persisted)}})
            if end < session.persisted:  # all of it is there already
                if total != session.persisted:
                    return self.persisted_answer(session)
                body, headers["Content-Range"] = b"", "bytes */%d" % total
            elif start < session.persisted:
                body = body[session.persisted - start:]
                headers["Content-Range"] = "bytes %d-%d/%s" % (session.persisted, end, m.group(4))
            headers["Content-Length"] = str(len(body))
        status, hdrs, data = self.upstream(method, self.path, body, headers)
        if status == 308:
            got = [v for k, v in hdrs if k.lower() == "range"]
            if got:
                session.persisted = int(got[0].rsplit("-", 1)[1]) + 1
        elif status in (200, 201, 412):
            session.final = (status, hdrs, data)
        return self.relay(method, status, hdrs, data)

    def upstream(self, method, path, body, headers):
        conn = http.client.HTTPConnection(self.server.upstream, timeout=60)
        try:
            conn.request(method, path, body=body, headers=headers)
            r = conn.getresponse()
            return r.status, r.getheaders(), r.read()
        finally:
            conn.close()

    def relay(self, method, status, hdrs, data):
        self.send_response(status)
        for k, v in hdrs:
            if k.lower() in ("content-length", "transfer-encoding", "connection", "date", "server"):
                continue
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if method != "HEAD":
            self.wfile.write(data)

    def do_GET(self):
        if self.path.startswith("/_stats"):
            bucket = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query).get("bucket", [None])[0]
            with LOCK:
                stats = dict(STATS)
                if bucket:
                    stats["tokens_used"] = len(SEEN.get(bucket, set()))
                return self.answer(200, stats)
        if self.path == "/computeMetadata/v1/instance/service-accounts/default/token":
            if self.headers.get("Metadata-Flavor") != "Google":
                return self.answer(403, {"error": "Missing Metadata-Flavor:Google header."})
            return self.issue()
        self.forward("GET")

    def do_POST(self):
        if self.path == "/token":
            return self.token(self.body())
        if self.path.startswith("/_admin/revoke"):
            self.body()
            q = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
            after, bucket = q.get("after"), q.get("bucket", [None])[0]
            with LOCK:
                if after:
                    REVOKE_AFTER[0] = int(after[0])
                    REVOKE_BUCKET[0] = bucket
                else:
                    TOKENS.clear()
            return self.answer(200, {"revoked": True})
        self.forward("POST")

    def do_PUT(self):
        self.forward("PUT")

    def do_DELETE(self):
        self.forward("DELETE")

    def do_PATCH(self):
        self.forward("PATCH")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--upstream", required=True, help="host:port of fake-gcs-server")
    ap.add_argument("--dir", required=True, help="where the key and the credentials files are written")
    ap.add_argument("--lifetime", type=int, default=3600, help="expires_in of issued tokens")
    ap.add_argument("--open-port", type=int, help="also serve the proxy here, without the token check")
    ap.add_argument("--daemon", action="store_true")
    a = ap.parse_args()
    os.makedirs(a.dir, exist_ok=True)
    key, pub = os.path.join(a.dir, "sa-key.pem"), os.path.join(a.dir, "sa-pub.pem")
    subprocess.run(["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", key], check=True, capture_output=True)
    subprocess.run(["openssl", "pkey", "-in", key, "-pubout", "-out", pub], check=True, capture_output=True)
    token_uri = "http://127.0.0.1:%d/token" % a.port
    sa = {"type": "service_account", "project_id": "wal-e-test", "private_key_id": secrets.token_hex(20),
          "private_key": open(key).read(), "client_email": EMAIL, "client_id": "1234567890",
          "auth_uri": "https://accounts.google.com/o/oauth2/auth", "token_uri": token_uri}
    json.dump(sa, open(os.path.join(a.dir, "service-account.json"), "w"), indent=2)
    au = {"type": "authorized_user", "client_id": CLIENT[0], "client_secret": CLIENT[1], "refresh_token": CLIENT[2], "token_uri": token_uri}
    json.dump(au, open(os.path.join(a.dir, "authorized-user.json"), "w"), indent=2)
    for f in ("service-account.json", "authorized-user.json", "sa-key.pem"):
        os.chmod(os.path.join(a.dir, f), 0o644)  # read by the tests as the postgres user
    srv = ThreadingHTTPServer(("127.0.0.1", a.port), Handler)
    servers = [srv]
    if a.open_port:
        servers.append(ThreadingHTTPServer(("127.0.0.1", a.open_port), Handler))
    for n, each in enumerate(servers):
        each.daemon_threads = True
        each.upstream, each.public_pem, each.token_uri, each.lifetime, each.open = a.upstream, pub, token_uri, a.lifetime, n > 0
    if a.daemon:
        pid = os.fork()
        if pid:
            print(pid)
            sys.stdout.flush()
            os._exit(0)
        os.setsid()
        devnull = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(devnull, fd)
    for each in servers[1:]:
        threading.Thread(target=each.serve_forever, daemon=True).start()
    srv.serve_forever()


if __name__ == "__main__":
    main()
