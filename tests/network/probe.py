"""Network probes run inside a sandbox by tests/cli_network.rs.

  probe.py get URL            GET through $HTTP_PROXY (absolute-form); prints status and body
  probe.py tunnel HOST PORT   GET / through $HTTP_PROXY with CONNECT; prints status and body
  probe.py direct HOST PORT   a plain TCP connection; prints "connected" or "refused: ..."
"""

import http.client
import os
import socket
import sys
import urllib.error
import urllib.request


def proxy():
    url = os.environ.get("HTTP_PROXY", "")
    hostport = url.removeprefix("http://").rstrip("/")
    host, port = hostport.rsplit(":", 1)
    return host, int(port)


def main():
    mode = sys.argv[1]
    if mode == "get":
        # The proxy for every host (NO_PROXY would send loopback addresses direct).
        for var in ("NO_PROXY", "no_proxy"):
            os.environ.pop(var, None)
        opener = urllib.request.build_opener(
            urllib.request.ProxyHandler({"http": os.environ["HTTP_PROXY"]})
        )
        try:
            with opener.open(sys.argv[2], timeout=10) as r:
                print(r.status, r.read().decode().strip())
        except urllib.error.HTTPError as e:
            print(e.code, e.read().decode().strip())
    elif mode == "tunnel":
        host, port = proxy()
        c = http.client.HTTPConnection(host, port, timeout=10)
        c.set_tunnel(sys.argv[2], int(sys.argv[3]))
        try:
            c.request("GET", "/")
            r = c.getresponse()
            print(r.status, r.read().decode().strip())
        except OSError as e:
            print("tunnel refused:", e)
    elif mode == "direct":
        try:
            socket.create_connection((sys.argv[2], int(sys.argv[3])), timeout=5).close()
            print("connected")
        except OSError as e:
            print("refused:", e)


if __name__ == "__main__":
    main()
