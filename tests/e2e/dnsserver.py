"""A tiny DNS server for the cluster's DNS discovery tests: answers A queries for one name with
the addresses it is given (changeable while it runs), an empty NOERROR answer to any other type of
query for that name, NXDOMAIN for other names. UDP on 127.0.0.1, a thread of its own. Written by
hand (RFC 1035 wire format) so the tests need no DNS package."""
from __future__ import annotations

import socket
import struct
import threading

TYPE_A = 1
CLASS_IN = 1
RCODE_NXDOMAIN = 3


def _read_name(msg: bytes, at: int) -> tuple[str, int]:
    """The query's name (no compression in questions) and the offset after it."""
    labels = []
    while True:
        n = msg[at]
        at += 1
        if n == 0:
            return ".".join(labels).lower(), at
        if n & 0xC0:
            raise ValueError("compressed name in a question")
        labels.append(msg[at:at + n].decode("ascii", "replace"))
        at += n


class DnsServer:
    def __init__(self, name: str, addresses: list[str]):
        self.name = name.rstrip(".").lower()
        self.addresses = list(addresses)
        self.queries = 0
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.addr = f"127.0.0.1:{self.sock.getsockname()[1]}"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="dns", daemon=True)
        self._thread.start()

    def answer(self, query: bytes) -> bytes | None:
        if len(query) < 12:
            return None
        qid, _flags, qdcount = struct.unpack("!HHH", query[:6])
        if qdcount != 1:
            return None
        try:
            qname, at = _read_name(query, 12)
        except (IndexError, ValueError):
            return None
        qtype, qclass = struct.unpack("!HH", query[at:at + 4])
        question = query[12:at + 4]
        answers = b""
        count = 0
        rcode = 0
        if qname != self.name:
            rcode = RCODE_NXDOMAIN
        elif qtype == TYPE_A and qclass == CLASS_IN:
            for ip in self.addresses:
                # Name: a pointer to the question's (offset 12); TTL 0: never cached.
                answers += struct.pack("!HHHIH", 0xC00C, TYPE_A, CLASS_IN, 0, 4) + socket.inet_aton(ip)
                count += 1
        # QR, opcode 0, AA, RD copied, RA; the rcode.
        flags = 0x8000 | 0x0400 | (struct.unpack("!H", query[2:4])[0] & 0x0100) | 0x0080 | rcode
        return struct.pack("!HHHHHH", qid, flags, 1, count, 0, 0) + question + answers

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                query, peer = self.sock.recvfrom(512)
            except socket.timeout:
                continue
            except OSError:
                return
            self.queries += 1
            reply = self.answer(query)
            if reply is not None:
                self.sock.sendto(reply, peer)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()
