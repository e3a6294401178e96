"""An independent WebSocket peer for spinwire's interop tests: the Python `websockets` library.

Usage: ws_peer.py [--cert PEM --key PEM] [--max-size N]
Binds 127.0.0.1 on a free port, prints `LISTENING <port>` on stdout, and serves until stdin
closes (the Rust test holds the pipe; when the test ends, the peer exits). What each connection
does is chosen by its path:

  /echo                echo every message back, as it came (text as text, binary as binary)
  /fragmented?n=N      send one text message in N fragments, then echo
  /ping                send a ping with payload b"are-you-there", wait for the pong (2 s),
                       then send the text "pong-ok" (or "pong-missing"), then echo
  /large?size=N        send one binary message of N bytes (byte i = i % 251), then echo;
                       print `CLOSE <code>` on stdout when the client has closed
  /close?code=C        send a close frame with code C and reason "bye", wait for the reply
  /abort               send "bye" then drop the TCP connection without a close frame
  /report-close        wait for the client's close; send nothing; print `CLOSE <code>` on stdout
"""

import argparse
import asyncio
import ssl
import sys
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import serve
from websockets.exceptions import ConnectionClosed


def query(ws, name, default):
    values = parse_qs(urlsplit(ws.request.path).query).get(name)
    return int(values[0]) if values else default


async def echo(ws):
    try:
        async for message in ws:
            await ws.send(message)
    except ConnectionClosed:
        pass


async def handler(ws):
    path = urlsplit(ws.request.path).path
    if path == "/echo":
        await echo(ws)
    elif path == "/fragmented":
        n = query(ws, "n", 5)
        await ws.send([f"part{i}-" for i in range(n)])
        await echo(ws)
    elif path == "/ping":
        waiter = await ws.ping(b"are-you-there")
        try:
            await asyncio.wait_for(waiter, 2.0)
            await ws.send("pong-ok")
        except asyncio.TimeoutError:
            await ws.send("pong-missing")
        await echo(ws)
    elif path == "/large":
        size = query(ws, "size", 1024)
        await ws.send(bytes(i % 251 for i in range(size)))
        await echo(ws)
        print(f"CLOSE {ws.close_code}", flush=True)
    elif path == "/close":
        await ws.close(code=query(ws, "code", 1000), reason="bye")
    elif path == "/abort":
        await ws.send("bye")
        ws.transport.abort()
    elif path == "/report-close":
        try:
            await ws.wait_closed()
        finally:
            print(f"CLOSE {ws.close_code}", flush=True)
    else:
        await ws.close(code=1008, reason="unknown path")


async def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--cert")
    parser.add_argument("--key")
    parser.add_argument("--max-size", type=int, default=64 * 1024 * 1024)
    args = parser.parse_args()
    ctx = None
    if args.cert:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(args.cert, args.key)
    async with serve(
        handler,
        "127.0.0.1",
        0,
        ssl=ctx,
        max_size=args.max_size,
        compression=None,
        ping_interval=None,
    ) as server:
        port = server.sockets[0].getsockname()[1]
        print(f"LISTENING {port}", flush=True)
        loop = asyncio.get_running_loop()
        # Serve until the test closes our stdin.
        await loop.run_in_executor(None, sys.stdin.read)


if __name__ == "__main__":
    asyncio.run(main())
