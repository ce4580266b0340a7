"""Long-lived TCP streams for the xlb labs (driven by xtask/src/lab/streams.rs).

server NAME PORT INTERVAL
    Listens on [::]:PORT (IPv4 and IPv6) and sends "NAME\n" every INTERVAL seconds on every
    accepted connection until the peer goes away. Whatever the peer sends is read and dropped.
    One selector loop: scales to thousands of connections.

client [--seconds S | --stop-file F] [--stall S] [--ping S] PORT N TARGET...
    Opens N connections to TARGET:PORT (round robin over the targets, IPv4 or IPv6), without
    blocking, in batches of 100; prints "connected C" once every connect has finished (C: how
    many succeeded). Then reads for S seconds (or until F exists), sending one byte every
    --ping seconds if given (so the client's packets keep crossing the director), and prints one
    line per connection: "conn TARGET SERVER STATE MAX_GAP_MS" where SERVER is the first line
    received and STATE one of
      ok        the stream ran to the end,
      reset     the connection was closed or reset,
      stalled   a gap between two reads longer than --stall seconds,
      refused   the connection could not be made (within 10 s),
      switched  a line from another server arrived (a mis-forwarded flow).

probe PORT N TARGET
    N sequential connections to TARGET:PORT (a new source port each), reading the first line;
    prints "SERVER COUNT" lines (failures counted as FAIL).
"""
import argparse
import collections
import os
import selectors
import socket
import sys
import time


def family(target):
    return socket.AF_INET6 if ":" in target else socket.AF_INET


def serve(name, port, interval):
    srv = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    srv.bind(("::", port))
    srv.listen(4096)
    srv.setblocking(False)
    sel = selectors.DefaultSelector()
    sel.register(srv, selectors.EVENT_READ)
    conns = set()
    line = (name + "\n").encode()

    def drop(c):
        sel.unregister(c)
        conns.discard(c)
        c.close()

    next_send = time.time()
    while True:
        for key, _ in sel.select(timeout=max(0.0, next_send - time.time())):
            if key.fileobj is srv:
                try:
                    while True:
                        c, _ = srv.accept()
                        c.setblocking(False)
                        conns.add(c)
                        sel.register(c, selectors.EVENT_READ)
                except BlockingIOError:
                    pass
                continue
            c = key.fileobj
            try:
                data = c.recv(4096)
            except BlockingIOError:
                continue
            except OSError:
                data = b""
            if not data:
                drop(c)
        if time.time() >= next_send:
            next_send = time.time() + interval
            for c in list(conns):
                try:
                    c.send(line)
                except BlockingIOError:
                    pass
                except OSError:
                    drop(c)


def connect_all(sel, targets, port, n):
    conns = []
    for i in range(n):
        target = targets[i % len(targets)]
        s = socket.socket(family(target), socket.SOCK_STREAM)
        s.setblocking(False)
        s.connect_ex((target, port))
        c = {"sock": s, "target": target, "name": None, "last": None, "gap": 0.0,
             "state": "connecting", "buf": b""}
        conns.append(c)
        sel.register(s, selectors.EVENT_WRITE, c)
        if i % 100 == 99:
            time.sleep(0.05)
    deadline = time.time() + 10
    connecting = n
    while connecting and time.time() < deadline:
        for key, _ in sel.select(timeout=0.2):
            c = key.data
            if c["state"] != "connecting":
                continue
            connecting -= 1
            if c["sock"].getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
                c["state"] = "refused"
                sel.unregister(c["sock"])
            else:
                c["state"] = "ok"
                c["last"] = time.time()
                sel.modify(c["sock"], selectors.EVENT_READ, c)
    for c in conns:
        if c["state"] == "connecting":
            c["state"] = "refused"
            sel.unregister(c["sock"])
    return conns


def receive(sel, c):
    try:
        data = c["sock"].recv(65536)
    except BlockingIOError:
        return
    except OSError:
        data = b""
    now = time.time()
    if not data:
        if c["state"] == "ok":
            c["state"] = "reset"
        sel.unregister(c["sock"])
        return
    c["gap"] = max(c["gap"], now - c["last"])
    c["last"] = now
    c["buf"] += data
    *lines, c["buf"] = c["buf"].split(b"\n")
    for line in lines:
        line = line.decode(errors="replace")
        if c["name"] is None:
            c["name"] = line
        elif line != c["name"] and c["state"] == "ok":
            c["state"] = "switched"


def client(args):
    sel = selectors.DefaultSelector()
    conns = connect_all(sel, args.targets, args.port, args.n)
    print("connected", sum(1 for c in conns if c["state"] == "ok"), flush=True)
    end = time.time() + args.seconds if args.stop_file is None else None

    def running():
        if end is not None:
            return time.time() < end
        return not os.path.exists(args.stop_file)

    next_ping = time.time()
    while running():
        if args.ping and time.time() >= next_ping:
            next_ping = time.time() + args.ping
            for c in conns:
                if c["state"] in ("ok", "switched"):
                    try:
                        c["sock"].send(b".")
                    except OSError:
                        pass
        for key, _ in sel.select(timeout=0.05):
            receive(sel, key.data)
    now = time.time()
    for c in conns:
        if c["state"] == "ok":
            c["gap"] = max(c["gap"], now - c["last"])
            if c["gap"] > args.stall:
                c["state"] = "stalled"
        print("conn", c["target"], c["name"] or "-", c["state"], int(c["gap"] * 1000))
    sys.stdout.flush()


def probe(port, n, target):
    seen = collections.Counter()
    for _ in range(n):
        try:
            s = socket.create_connection((target, port), timeout=2)
            data = b""
            while b"\n" not in data:
                d = s.recv(4096)
                if not d:
                    break
                data += d
            s.close()
            seen[data.split(b"\n")[0].decode().strip() or "FAIL"] += 1
        except OSError:
            seen["FAIL"] += 1
    for k, v in sorted(seen.items()):
        print(k, v)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="mode", required=True)
    s = sub.add_parser("server")
    s.add_argument("name")
    s.add_argument("port", type=int)
    s.add_argument("interval", type=float)
    c = sub.add_parser("client")
    until = c.add_mutually_exclusive_group(required=True)
    until.add_argument("--seconds", type=float)
    until.add_argument("--stop-file")
    c.add_argument("--stall", type=float, default=2.0)
    c.add_argument("--ping", type=float, default=0.0)
    c.add_argument("port", type=int)
    c.add_argument("n", type=int)
    c.add_argument("targets", nargs="+")
    r = sub.add_parser("probe")
    r.add_argument("port", type=int)
    r.add_argument("n", type=int)
    r.add_argument("target")
    args = p.parse_args()
    if args.mode == "server":
        serve(args.name, args.port, args.interval)
    elif args.mode == "client":
        client(args)
    else:
        probe(args.port, args.n, args.target)


if __name__ == "__main__":
    main()
