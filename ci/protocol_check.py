#!/usr/bin/env python3
"""A baidu_std client written from docs/protocol.md alone (no protobuf
library, no mprpc code), used to check a running provider against the
document:

    build/bin/echo_server --listen 127.0.0.1:0 &      # prints its port
    python3 ci/protocol_check.py 127.0.0.1:PORT
    python3 ci/protocol_check.py --spawn build/bin/echo_server   # both at once

It calls example.EchoService.Echo, pipelines requests, sends compressed
requests (section 6; snappy as literals, gzip and zlib with zlib), and checks the
provider's answer to each input of section 8 of docs/protocol.md. Exit
status 0 when every check passes; one line per check either way.
"""
import re
import socket
import struct
import subprocess
import sys
import zlib

# ---- protobuf wire format, by hand (section 3) ------------------------------


def varint(v):
    v &= (1 << 64) - 1  # int32/int64: two's complement, sign-extended
    out = bytearray()
    while v >= 0x80:
        out.append((v & 0x7F) | 0x80)
        v >>= 7
    out.append(v)
    return bytes(out)


def field_varint(num, v):
    return varint(num << 3 | 0) + varint(v)


def field_bytes(num, b):
    return varint(num << 3 | 2) + varint(len(b)) + b


def read_varint(b, i):
    v = shift = 0
    for _ in range(10):
        c = b[i]
        i += 1
        v |= (c & 0x7F) << shift
        shift += 7
        if c < 0x80:
            return v & ((1 << 64) - 1), i
    raise ValueError("varint too long")


def parse_fields(b):
    """{field number: last value}; unknown fields skipped (no groups here)."""
    out, i = {}, 0
    while i < len(b):
        key, i = read_varint(b, i)
        num, wt = key >> 3, key & 7
        if wt == 0:
            v, i = read_varint(b, i)
        elif wt == 2:
            n, i = read_varint(b, i)
            v, i = b[i:i + n], i + n
        elif wt == 1:
            v, i = b[i:i + 8], i + 8
        elif wt == 5:
            v, i = b[i:i + 4], i + 4
        else:
            raise ValueError("wire type %d" % wt)
        out[num] = v
    return out


def signed(v, bits):
    v &= (1 << bits) - 1
    return v - (1 << bits) if v >> (bits - 1) else v


# ---- frames (section 2) ------------------------------------------------------


def request_frame(cid, service, method, payload=b"", attachment=b"", timeout_ms=0, compress=0):
    req = field_bytes(1, service.encode()) + field_bytes(2, method.encode())
    if timeout_ms:
        req += field_varint(8, timeout_ms)
    meta = field_bytes(1, req)
    if compress:
        meta += field_varint(3, compress)
    meta += field_varint(4, cid)
    if attachment:
        meta += field_varint(5, len(attachment))
    body = meta + payload + attachment
    return b"PRPC" + struct.pack(">II", len(body), len(meta)) + body


def echo_request(msg):  # EchoRequest { required string message = 1; }
    return field_bytes(1, msg)


# Section 6: snappy (raw format), gzip (RFC 1952), zlib (RFC 1950).
def snappy_literal(b):  # the whole input as one literal element
    n = len(b) - 1
    if n < 60:
        return varint(len(b)) + bytes([n << 2]) + b
    k = (n.bit_length() + 7) // 8  # 1-4 bytes of length - 1 follow the tag
    return varint(len(b)) + bytes([(59 + k) << 2]) + n.to_bytes(k, "little") + b


def snappy_decode(b):
    n, i = read_varint(b, 0)
    out = bytearray()
    while i < len(b):
        tag, kind = b[i], b[i] & 3
        i += 1
        if kind == 0:  # literal; lengths over 60 in 1-4 following bytes
            ln = tag >> 2
            if ln >= 60:
                k = ln - 59
                ln = int.from_bytes(b[i:i + k], "little")
                i += k
            ln += 1
            out += b[i:i + ln]
            i += ln
            continue
        if kind == 1:
            ln, off = ((tag >> 2) & 7) + 4, ((tag >> 5) << 8) | b[i]
            i += 1
        else:
            k = 2 if kind == 2 else 4
            ln, off = (tag >> 2) + 1, int.from_bytes(b[i:i + k], "little")
            i += k
        for _ in range(ln):
            out.append(out[-off])
    if len(out) != n:
        raise ValueError("snappy length %d != %d" % (len(out), n))
    return bytes(out)


def inflate(kind, b):
    if kind == 1:
        return snappy_decode(b)
    return zlib.decompress(b, 31 if kind == 2 else 15)


class Conn:
    def __init__(self, addr):
        host, port = addr.rsplit(":", 1)
        self.s = socket.create_connection((host, int(port)), timeout=10)
        self.buf = b""

    def send(self, data):
        self.s.sendall(data)

    def read_frame(self):
        """(meta fields, payload, attachment), or None when the peer closed."""
        while True:
            if len(self.buf) >= 12:
                if self.buf[:4] != b"PRPC":
                    raise ValueError("bad magic from server")
                body, meta_size = struct.unpack(">II", self.buf[4:12])
                if len(self.buf) >= 12 + body:
                    frame, self.buf = self.buf[:12 + body], self.buf[12 + body:]
                    meta = parse_fields(frame[12:12 + meta_size])
                    att = meta.get(5, 0)
                    rest = frame[12 + meta_size:]
                    return meta, rest[:len(rest) - att], rest[len(rest) - att:]
            try:
                chunk = self.s.recv(65536)
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                return None
            self.buf += chunk

    def close(self):
        self.s.close()


def error_of(meta):
    resp = parse_fields(meta.get(2, b""))
    return signed(resp.get(1, 0), 32), resp.get(2, b"").decode(errors="replace")


# ---- checks ------------------------------------------------------------------

failures = 0


def check(name, ok, detail=""):
    global failures
    print("%s %s%s" % ("ok  " if ok else "FAIL", name, (": " + detail) if detail and not ok else ""))
    if not ok:
        failures += 1


def call_error(addr, service, method, payload, **kw):
    c = Conn(addr)
    c.send(request_frame(7, service, method, payload, **kw))
    r = c.read_frame()
    still_open = False
    if r is not None:  # the connection must stay usable after a call error
        c.send(request_frame(8, "example.EchoService", "Echo", echo_request(b"again")))
        r2 = c.read_frame()
        still_open = r2 is not None and error_of(r2[0])[0] == 0 and signed(r2[0].get(4, 0), 64) == 8
    c.close()
    if r is None:
        return None, None, False
    return error_of(r[0])[0], signed(r[0].get(4, 0), 64), still_open


def expect_close(addr, name, data):
    c = Conn(addr)
    c.send(data)
    try:
        r = c.read_frame()
        check(name + " -> connection closed, nothing sent", r is None, "got a frame %r" % (r,))
    except socket.timeout:
        check(name + " -> connection closed", False, "no close within 10 s")
    c.close()


def spawn(server):
    """Starts `server --listen 127.0.0.1:0`; returns (process, "host:port")."""
    p = subprocess.Popen([server, "--listen", "127.0.0.1:0"], stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True)
    for _ in range(50):
        line = p.stdout.readline()
        if not line:
            break
        m = re.search(r"listening on (127\.0\.0\.1:\d+)", line)
        if m:
            return p, m.group(1)
    p.kill()
    p.wait()
    raise SystemExit("protocol_check: %s did not say where it listens" % server)


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "--spawn":
        proc, addr = spawn(sys.argv[2])
        try:
            return run(addr)
        finally:
            proc.terminate()  # SIGTERM: graceful stop
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    if len(sys.argv) != 2:
        print(__doc__)
        return 2
    return run(sys.argv[1])


def run(addr):

    c = Conn(addr)
    c.send(request_frame(1, "example.EchoService", "Echo", echo_request(b"hello"), b"ATT", 500))
    meta, payload, att = c.read_frame()
    check("echo: error_code 0", error_of(meta)[0] == 0, str(error_of(meta)))
    check("echo: correlation_id echoed", signed(meta.get(4, 0), 64) == 1)
    check("echo: payload is EchoResponse{message: hello}", parse_fields(payload).get(1) == b"hello",
          repr(payload))
    check("echo: attachment echoed", att == b"ATT", repr(att))
    # pipelining, with extreme ids, in one write split oddly
    ids = [-(1 << 63), -1, 0, 2, (1 << 63) - 1]
    data = b"".join(request_frame(i, "example.EchoService", "Echo", echo_request(b"m%d" % k))
                    for k, i in enumerate(ids))
    for k in range(0, len(data), 7):
        c.send(data[k:k + 7])
    got = {}
    for _ in ids:
        m, p, _ = c.read_frame()
        got[signed(m.get(4, 0), 64)] = parse_fields(p).get(1)
    check("pipelined: every id answered once with its message",
          got == {i: b"m%d" % k for k, i in enumerate(ids)}, repr(got))
    c.close()

    # compression (section 6): a compressed request is answered in kind
    check("snappy: the document's example", snappy_literal(echo_request(b"hi")) ==
          bytes.fromhex("040c0a026869"))
    gz = zlib.compressobj(wbits=31)
    msg = b"compress me " * 40
    c = Conn(addr)
    for kind, name, pay in [(1, "snappy", snappy_literal(echo_request(msg))),
                            (2, "gzip", gz.compress(echo_request(msg)) + gz.flush()),
                            (3, "zlib", zlib.compress(echo_request(msg)))]:
        c.send(request_frame(3, "example.EchoService", "Echo", pay, compress=kind))
        meta, payload, _ = c.read_frame()
        check("%s: error_code 0" % name, error_of(meta)[0] == 0, str(error_of(meta)))
        check("%s: answered with compress_type %d" % (name, kind), meta.get(3, 0) == kind,
              repr(meta.get(3)))
        try:
            got = parse_fields(inflate(kind, payload)).get(1)
        except Exception as e:  # noqa: BLE001 - reported as a failed check
            got = "does not inflate: %s" % e
        check("%s: payload inflates to EchoResponse{message}" % name, got == msg, repr(got)[:80])
    c.close()

    for name, args, kw, code in [
        ("compress_type 4 (not implemented)",
         ("example.EchoService", "Echo", echo_request(b"x")), {"compress": 4}, 1003),
        ("gzip payload that is not gzip",
         ("example.EchoService", "Echo", echo_request(b"x")), {"compress": 2}, 1003),
    ]:
        err, cid, still_open = call_error(addr, *args, **kw)
        check("%s -> error %d" % (name, code), err == code, "got %r" % (err,))
        check("%s -> connection stays open" % name, still_open)

    for name, args, code in [
        ("unknown service", ("no.Such", "Echo", echo_request(b"x")), 1001),
        ("unknown method", ("example.EchoService", "Nope", echo_request(b"x")), 1002),
        ("payload not an EchoRequest", ("example.EchoService", "Echo", b"\xff\xff\xff"), 1003),
    ]:
        err, cid, still_open = call_error(addr, *args)
        check("%s -> error %d" % (name, code), err == code, "got %r" % (err,))
        check("%s -> correlation_id echoed" % name, cid == 7, "got %r" % (cid,))
        check("%s -> connection stays open" % name, still_open)

    expect_close(addr, "bad magic", b"HELO\0\0\0\0\0\0\0\0")
    # The same port serves the builtin console to HTTP (docs/console.md).
    c = Conn(addr)
    c.send(b"GET /health HTTP/1.1\r\nConnection: close\r\n\r\n")
    got = b""
    try:
        while True:
            chunk = c.s.recv(4096)
            if not chunk:
                break
            got += chunk
    except socket.timeout:
        pass
    c.close()
    check("HTTP on the service port -> the console answers", got.startswith(b"HTTP/1.1 200 OK"),
          repr(got[:40]))
    expect_close(addr, "meta_size > body_size", b"PRPC" + struct.pack(">II", 4, 5) + b"\0" * 4)
    expect_close(addr, "body over the limit (header only)", b"PRPC" + struct.pack(">II", 0xFFFFFFFF, 0))
    meta = field_varint(5, 100) + field_varint(4, 1)
    expect_close(addr, "attachment_size > rest",
                 b"PRPC" + struct.pack(">II", len(meta) + 3, len(meta)) + meta + b"abc")
    expect_close(addr, "undecodable meta", b"PRPC" + struct.pack(">II", 2, 2) + b"\x20\x80")
    meta = field_bytes(1, field_varint(3, 1)) + field_varint(4, 1)
    expect_close(addr, "request without names",
                 b"PRPC" + struct.pack(">II", len(meta), len(meta)) + meta)
    meta = field_bytes(2, b"") + field_varint(4, 1)
    expect_close(addr, "response meta sent to a server",
                 b"PRPC" + struct.pack(">II", len(meta), len(meta)) + meta)

    print("protocol_check: %d failed" % failures)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
