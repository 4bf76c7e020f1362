#!/usr/bin/python3
"""A small Keystone (identity v2.0 and v3, password method) for the tests, on 127.0.0.1.

It checks the user's password and project like Keystone does, then hands out a *real* token: one
it gets from the Swift SAIO's TempAuth, so the proxy accepts it, with a service catalog whose
object-store endpoints point at the proxy's storage URL. Users:

  tester / testing, project "test" (id "test-id"), domain "default" -> TempAuth test:tester

GET /_stats answers {"issued": N}: how many tokens were handed out (tests count re-authentications).
--expires-in sets the lifetime Keystone reports for a token (the TempAuth token itself lives on).
"""
import argparse
import datetime
import json
import os
import sys
import threading
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

USERS = {"tester": {"id": "tester-id", "password": "testing", "project": "test", "project_id": "test-id", "tempauth": ("test:tester", "testing")}}
ISSUED = [0]
LOCK = threading.Lock()


def tempauth(swift, user, key):
    req = urllib.request.Request(swift + "/auth/v1.0", headers={"X-Auth-User": user, "X-Auth-Key": key})
    with urllib.request.urlopen(req, timeout=10) as r:
        return r.headers["X-Auth-Token"], r.headers["X-Storage-Url"]


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

    def do_GET(self):
        if self.path == "/_stats":
            return self.answer(200, {"issued": ISSUED[0]})
        self.answer(404, {"error": {"code": 404, "message": "not found"}})

    def expiry(self):
        t = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=self.server.expires_in)
        return t.strftime("%Y-%m-%dT%H:%M:%S.000000Z")

    def issue(self, user):
        token, url = tempauth(self.server.swift, *user["tempauth"])
        with LOCK:
            ISSUED[0] += 1
        return token, url

    def do_POST(self):
        n = int(self.headers.get("Content-Length") or 0)
        try:
            body = json.loads(self.rfile.read(n) or b"{}")
        except ValueError:
            return self.answer(400, {"error": {"code": 400, "message": "malformed JSON"}})
        if self.path.rstrip("/") == "/v2.0/tokens":
            return self.v2(body.get("auth") or {})
        if self.path.rstrip("/") == "/v3/auth/tokens":
            return self.v3(body.get("auth") or {})
        self.answer(404, {"error": {"code": 404, "message": "not found"}})

    def unauthorized(self):
        self.answer(401, {"error": {"code": 401, "title": "Unauthorized", "message": "The request you have made requires authentication."}})

    def v2(self, auth):
        cred = auth.get("passwordCredentials") or {}
        user = USERS.get(cred.get("username"))
        if not user or cred.get("password") != user["password"]:
            return self.unauthorized()
        if auth.get("tenantName", user["project"]) != user["project"] or auth.get("tenantId", user["project_id"]) != user["project_id"]:
            return self.unauthorized()
        token, url = self.issue(user)
        endpoint = {"region": "RegionOne", "publicURL": url, "internalURL": url, "adminURL": url}
        self.answer(200, {"access": {
            "token": {"id": token, "expires": self.expiry(), "tenant": {"id": user["project_id"], "name": user["project"]}},
            "serviceCatalog": [{"type": "identity", "name": "keystone", "endpoints": [{"region": "RegionOne", "publicURL": "http://127.0.0.1/"}]},
                               {"type": "object-store", "name": "swift", "endpoints": [endpoint]}],
            "user": {"id": user["id"], "name": cred.get("username")}}})

    def v3(self, auth):
        ident = auth.get("identity") or {}
        if "password" not in (ident.get("methods") or []):
            return self.unauthorized()
        u = (ident.get("password") or {}).get("user") or {}
        name = u.get("name") or next((k for k, v in USERS.items() if v["id"] == u.get("id")), None)
        user = USERS.get(name)
        if not user or u.get("password") != user["password"]:
            return self.unauthorized()
        if "name" in u and (u.get("domain") or {}) not in ({"id": "default"}, {"name": "Default"}):
            return self.unauthorized()
        project = ((auth.get("scope") or {}).get("project")) or {}
        if project.get("id", user["project_id"]) != user["project_id"] or project.get("name", user["project"]) != user["project"]:
            return self.unauthorized()
        token, url = self.issue(user)
        endpoints = [{"interface": i, "region": "RegionOne", "region_id": "RegionOne", "url": url} for i in ("public", "internal", "admin")]
        self.answer(201, {"token": {
            "methods": ["password"], "expires_at": self.expiry(),
            "project": {"id": user["project_id"], "name": user["project"], "domain": {"id": "default"}},
            "catalog": [{"type": "object-store", "name": "swift", "endpoints": endpoints}]}},
            headers=[("X-Subject-Token", token)])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--swift", required=True, help="the SAIO proxy, e.g. http://127.0.0.1:9360")
    ap.add_argument("--expires-in", type=int, default=3600)
    ap.add_argument("--daemon", action="store_true", help="print the server's pid once it listens, and return")
    a = ap.parse_args()
    srv = ThreadingHTTPServer(("127.0.0.1", a.port), Handler)
    srv.swift = a.swift.rstrip("/")
    srv.expires_in = a.expires_in
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
    srv.serve_forever()


if __name__ == "__main__":
    main()
