"""A tiny DNS server for tests (UDP on 127.0.0.1, an ephemeral port the OS picks): A records
from a fixed table, no answer for AAAA, NXDOMAIN for every other name. A test fixture, not
a resolver: it answers exactly the one-question queries c-ares sends."""

import socket
import struct
import threading


class DnsServer:
    def __init__(self, records):
        self.records = {name.lower().rstrip("."): ip for name, ip in records.items()}
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))  # bound here, kept: no other process can take it
        self.port = self.sock.getsockname()[1]
        self.queries = []
        self._stop = False
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    @property
    def address(self):
        return f"127.0.0.1:{self.port}"

    def close(self):
        self._stop = True
        self.sock.close()

    def _serve(self):
        while not self._stop:
            try:
                data, peer = self.sock.recvfrom(512)
            except OSError:
                return
            answer = self._answer(data)
            if answer is not None:
                try:
                    self.sock.sendto(answer, peer)
                except OSError:
                    return

    def _answer(self, q):
        if len(q) < 12:
            return None
        qid, _flags, qdcount = struct.unpack("!HHH", q[:6])
        if qdcount != 1:
            return None
        labels, at = [], 12
        while at < len(q) and q[at] != 0:
            n = q[at]
            labels.append(q[at + 1:at + 1 + n].decode("ascii", "replace"))
            at += 1 + n
        at += 1
        if at + 4 > len(q):
            return None
        qtype, _qclass = struct.unpack("!HH", q[at:at + 4])
        question = q[12:at + 4]
        name = ".".join(labels).lower()
        self.queries.append((name, qtype))
        ip = self.records.get(name)
        if ip is None:
            return struct.pack("!HHHHHH", qid, 0x8183, 1, 0, 0, 0) + question  # NXDOMAIN
        if qtype != 1:
            return struct.pack("!HHHHHH", qid, 0x8180, 1, 0, 0, 0) + question  # no AAAA
        rr = struct.pack("!HHHIH", 0xC00C, 1, 1, 60, 4) + socket.inet_aton(ip)
        return struct.pack("!HHHHHH", qid, 0x8180, 1, 1, 0, 0) + question + rr
