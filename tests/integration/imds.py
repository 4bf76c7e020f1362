"""A small EC2 instance metadata service (IMDSv2 only) on 127.0.0.1 for --aws-instance-profile tests.

Usage: imds.py TTL_SECONDS LOG_FILE AK:SK [AK:SK ...]
Answers PUT /latest/api/token, and with a valid token the role list and the role's keys. Each
credential fetch hands out the next key pair in turn, expiring TTL_SECONDS later, and appends
"creds N ACCESS_KEY" to LOG_FILE. Requests without a session token get 401, as on an instance
that requires IMDSv2. Prints its port; runs for at most 10 minutes.
"""
import http.server
import json
import secrets
import sys
import threading
import time

ttl, log_path, pairs = int(sys.argv[1]), sys.argv[2], [p.split(":", 1) for p in sys.argv[3:]]
ROLE = "wale-test-role"
tokens = set()
lock = threading.Lock()
fetches = [0]


class Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *a):
        pass

    def answer(self, code, body):
        data = body.encode()
        self.send_response(code)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_PUT(self):
        if self.path != "/latest/api/token" or not self.headers.get("X-aws-ec2-metadata-token-ttl-seconds"):
            return self.answer(400, "bad token request")
        t = secrets.token_urlsafe(24)
        with lock:
            tokens.add(t)
        self.answer(200, t)

    def do_GET(self):
        with lock:
            ok = self.headers.get("X-aws-ec2-metadata-token") in tokens
        if not ok:
            return self.answer(401, "")
        base = "/latest/meta-data/iam/security-credentials/"
        if self.path == base:
            return self.answer(200, ROLE + "\n")
        if self.path == base + ROLE:
            with lock:
                n = fetches[0]
                fetches[0] += 1
                ak, sk = pairs[n % len(pairs)]
                with open(log_path, "a") as f:
                    f.write(f"creds {n} {ak}\n")
            exp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + ttl))
            return self.answer(200, json.dumps({
                "Code": "Success", "LastUpdated": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "Type": "AWS-HMAC",
                "AccessKeyId": ak, "SecretAccessKey": sk, "Token": "", "Expiration": exp}))
        self.answer(404, "")


server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
print(server.server_address[1], flush=True)
threading.Timer(600, server.shutdown).start()
server.serve_forever()
