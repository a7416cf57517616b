#!/usr/bin/env python3
"""Opens N keep-alive connections to 127.0.0.1:PORT, makes one request on each, keeps them all idle,
then prints the server's resident memory (VmRSS of PIDS, summed) before and while they are open."""
import selectors, socket, sys, time

port, count, pids = int(sys.argv[1]), int(sys.argv[2]), [int(p) for p in sys.argv[3].split(",")]

def rss():
    total = 0
    for pid in pids:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
    return total  # KiB

before = rss()
sockets = []
request = b"GET /small/0.bin HTTP/1.1\r\nHost: x\r\n\r\n"
for i in range(count):
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(request)
    sockets.append(s)
# Read every response so each connection is an idle keep-alive connection.
for s in sockets:
    s.settimeout(10)
    data = b""
    while b"\r\n\r\n" not in data:
        data += s.recv(65536)
time.sleep(2)
during = rss()
alive = 0
for s in sockets:
    s.setblocking(False)
    try:
        if s.recv(1) == b"":
            continue
    except BlockingIOError:
        alive += 1
    except OSError:
        pass
print(f"{before} {during} {alive}")
for s in sockets:
    s.close()
