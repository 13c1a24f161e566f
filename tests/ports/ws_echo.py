"""A WebSocket echo server with only the standard library (RFC 6455: handshake, masked
client frames, text/binary echoed, close answered). argv[1]: the port on 127.0.0.1."""

import base64
import hashlib
import socket
import struct
import sys
import threading

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def recvn(c, n):
    b = b""
    while len(b) < n:
        x = c.recv(n - len(b))
        if not x:
            raise EOFError
        b += x
    return b


def handle(c):
    try:
        data = b""
        while b"\r\n\r\n" not in data:
            x = c.recv(4096)
            if not x:
                return
            data += x
        key = [l.split(b":", 1)[1].strip() for l in data.split(b"\r\n")
               if l.lower().startswith(b"sec-websocket-key")][0]
        accept = base64.b64encode(hashlib.sha1(key + GUID).digest())
        c.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                  b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n")
        while True:
            h = recvn(c, 2)
            op, n = h[0] & 0x0F, h[1] & 0x7F
            if n == 126:
                n = struct.unpack(">H", recvn(c, 2))[0]
            elif n == 127:
                n = struct.unpack(">Q", recvn(c, 8))[0]
            mask = recvn(c, 4)
            p = bytearray(recvn(c, n))
            for i in range(n):
                p[i] ^= mask[i % 4]
            if op == 8:
                c.sendall(b"\x88\x00")
                return
            if n < 126:
                hdr = bytes([0x80 | op, n])
            elif n < 65536:
                hdr = bytes([0x80 | op, 126]) + struct.pack(">H", n)
            else:
                hdr = bytes([0x80 | op, 127]) + struct.pack(">Q", n)
            c.sendall(hdr + bytes(p))
    except (EOFError, OSError):
        pass
    finally:
        c.close()


s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1])))
s.listen()
while True:
    conn, _ = s.accept()
    threading.Thread(target=handle, args=(conn,), daemon=True).start()
