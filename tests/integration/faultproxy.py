"""A fault-injecting HTTP proxy on 127.0.0.1 in front of the test S3 server.

Modes (first argument): `errors N` answers the first N requests with 503 SlowDown, then forwards;
`reset N` closes the connection without answering on the first N requests; `reset-part N` resets
the connection half-way through the body of the first N multipart UploadPart requests; `corrupt N`
flips one byte in the middle of the body of the first N PUT requests and forwards the damaged body
(the server must refuse it: its checksum no longer matches); `stall` accepts and never answers;
`trickle N` forwards, then sends the response head at once and its body one byte every two
seconds, for the first N responses that have a body (N = 0: every response; one without a body then has
its head trickled); `stall-body N` sends the head and then nothing (N = 0: a head without a body
stops before its end); `reset-body N` sends the head and half the body, then resets;
`expired-token N` answers the first N requests with S3's 400 ExpiredToken (a session token
past its expiry); `unauthorized N` answers the first N requests under /v1/ (Swift's API) with 401; `reset-upload N`
resets the connection half-way through the body of the first N PUT requests with a body over
64 KiB; `pass` only forwards. With FAULTPROXY_REWRITE=1 the upstream's address in response heads
(Swift's X-Storage-Url) is replaced by the proxy's own, so the client stays behind the proxy. With FAULTPROXY_LOG=FILE every request line is
appended to FILE (with the x-amz-security-token header's value, if any). With FAULTPROXY_BYTES=FILE
each request appends "<request body bytes> <response body bytes>" to FILE (what crossed the wire). With
FAULTPROXY_INFLIGHT=FILE the most PUT requests with a body over 1 MiB that were with the server at
once (received whole, not yet answered) is kept in FILE. Prints the port it
listens on; runs until killed, for at most 10 minutes. Each connection carries one answer, then
closes; an answer without a Connection header gets `Connection: close`, so the client does not
reuse a connection the proxy is about to close.
"""
import os
import socket
import sys
import threading
import time

mode, count = sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 0
upstream = ("127.0.0.1", int(sys.argv[3])) if len(sys.argv) > 3 else None
lock = threading.Lock()
seen = [0]
parts_reset = [0]
corrupted = [0]
bodies = [0]
log_path = os.environ.get("FAULTPROXY_LOG")
bytes_path = os.environ.get("FAULTPROXY_BYTES")
inflight_path = os.environ.get("FAULTPROXY_INFLIGHT")
inflight = [0, 0]  # now, most


def reset(conn):
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")


def read_request(conn):
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return None
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    length = 0
    token = b""
    for line in head.split(b"\r\n")[1:]:
        k, _, v = line.partition(b":")
        if k.strip().lower() == b"content-length":
            length = int(v.strip())
        if k.strip().lower() == b"x-amz-security-token":
            token = v.strip()
    request_line = head.split(b"\r\n")[0]
    if log_path:
        with lock, open(log_path, "ab") as f:
            f.write(request_line + (b" token=" + token if token else b"") + b"\n")
    upload = mode == "reset-upload" and request_line.startswith(b"PUT ") and length > 65536
    if (mode == "reset-part" and b"partNumber=" in request_line) or upload:
        with lock:
            parts_reset[0] += 1
            doomed = parts_reset[0] <= count
        if doomed:
            while len(rest) < length // 2:
                chunk = conn.recv(65536)
                if not chunk:
                    break
                rest += chunk
            reset(conn)
            return None
    while len(rest) < length:
        chunk = conn.recv(65536)
        if not chunk:
            return None
        rest += chunk
    if mode == "corrupt" and request_line.startswith(b"PUT ") and length > 0:
        with lock:
            corrupted[0] += 1
            doomed = corrupted[0] <= count
        if doomed:
            body = bytearray(rest)
            body[length // 2] ^= 0x01
            rest = bytes(body)
    return head + b"\r\n\r\n" + rest


def forward(raw):
    with socket.create_connection(upstream, timeout=60) as u:
        line, _, rest = raw.partition(b"\r\n")
        u.sendall(line + b"\r\nConnection: close\r\n" + rest)
        parts = []
        while True:
            chunk = u.recv(1 << 20)
            if not chunk:
                return b"".join(parts)
            parts.append(chunk)


def handle(conn):
    with conn:
        while True:
            raw = read_request(conn)
            if raw is None:
                return
            with lock:
                seen[0] += 1
                n = seen[0]
            if mode == "stall":
                time.sleep(600)
                return
            if mode == "reset" and n <= count:
                reset(conn)
                return
            if mode == "unauthorized" and b" /v1/" in raw.partition(b"\r\n")[0]:
                with lock:
                    corrupted[0] += 1
                    doomed = corrupted[0] <= count
                if doomed:
                    body = b"<html><h1>Unauthorized</h1></html>"
                    conn.sendall(b"HTTP/1.1 401 Unauthorized\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
                    continue
            if mode == "expired-token" and n <= count:
                body = b"<Error><Code>ExpiredToken</Code><Message>The provided token has expired.</Message></Error>"
                conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: %d\r\nContent-Type: application/xml\r\n\r\n%s" % (len(body), body))
                continue
            if mode == "sse-500" and b"\r\nx-amz-server-side-encryption:" in raw.partition(b"\r\n\r\n")[0].lower():
                body = b"<Error><Code>InternalError</Code><Message>We encountered an internal error.</Message></Error>"
                conn.sendall(b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: %d\r\nContent-Type: application/xml\r\n\r\n%s" % (len(body), body))
                continue
            if mode == "errors" and n <= count:
                body = b"<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>"
                conn.sendall(b"HTTP/1.1 503 Slow Down\r\nContent-Length: %d\r\nContent-Type: application/xml\r\n\r\n%s" % (len(body), body))
                continue
            big_put = inflight_path and raw.startswith(b"PUT ") and len(raw.partition(b"\r\n\r\n")[2]) > (1 << 20)
            if big_put:
                with lock:
                    inflight[0] += 1
                    inflight[1] = max(inflight)
                    with open(inflight_path, "w") as f:
                        f.write(str(inflight[1]))
            try:
                resp = forward(raw)
            finally:
                if big_put:
                    with lock:
                        inflight[0] -= 1
            if bytes_path:
                with lock, open(bytes_path, "a") as f:
                    f.write("%d %d\n" % (len(raw.partition(b"\r\n\r\n")[2]), len(resp.partition(b"\r\n\r\n")[2])))
            if os.environ.get("FAULTPROXY_REWRITE") == "1":
                head, sep, body = resp.partition(b"\r\n\r\n")
                resp = head.replace(b"127.0.0.1:%d" % upstream[1], b"127.0.0.1:%d" % own_port) + sep + body
            if mode in ("trickle", "stall-body", "reset-body"):
                head, sep, body = resp.partition(b"\r\n\r\n")
                if not body and count == 0:
                    # No body to slow down (a PUT's answer): the head itself trickles or stops short.
                    with lock:
                        bodies[0] += 1
                    if mode == "trickle":
                        for i in range(len(head)):
                            conn.sendall(head[i:i + 1])
                            time.sleep(2)
                    elif mode == "stall-body":
                        conn.sendall(head)
                        time.sleep(600)
                    else:
                        reset(conn)
                    return
                if body:
                    with lock:
                        bodies[0] += 1
                        doomed = count == 0 or bodies[0] <= count
                    if doomed:
                        conn.sendall(head + sep)
                        if mode == "trickle":
                            for i in range(len(body)):
                                conn.sendall(body[i:i + 1])
                                time.sleep(2)
                        elif mode == "stall-body":
                            time.sleep(600)
                        else:
                            conn.sendall(body[:len(body) // 2])
                            reset(conn)
                        return
            head, sep, body = resp.partition(b"\r\n\r\n")
            if b"\r\nconnection:" not in head.lower():
                # This proxy closes after one answer: say so, or the client reuses a closed connection.
                resp = head + b"\r\nConnection: close" + sep + body
            conn.sendall(resp)
            return


s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", 0))
s.listen(64)
own_port = s.getsockname()[1]
print(own_port, flush=True)
deadline = time.time() + 600
s.settimeout(1)
while time.time() < deadline:
    try:
        c, _ = s.accept()
    except socket.timeout:
        continue
    threading.Thread(target=handle, args=(c,), daemon=True).start()
