"""Client-side CPU per request of the load generator's candidate HTTP clients (issue #20).

The bench's load generator shares the 2 cores with the server under test, so each client's own
CPU per request is capacity the server loses. This measures it against a trivial loopback server
(a raw asyncio protocol in its own process, answering every POST with a 16-byte JSON body), so the
figures are the clients' cost, not the server's:

- `hand-written`: bench/http_client.py (asyncio streams, HTTP/1.1 keep-alive);
- `httpx`: httpx.AsyncClient, one shared client, pool limited to the concurrency;
- `aiohttp`: aiohttp.ClientSession, one shared session, TCPConnector(limit=concurrency);
- `wrk`: the C tool (Debian `wrk`), one thread, `-c` connections, a fixed POST body via Lua.

Each Python client runs in a fresh child process doing a closed loop of POSTs to /v1/select with a
~200-byte JSON body that differs per request (as bench/loadgen.py sends), at concurrency 1 and 16;
its CPU is the child's process time around the loop only (no interpreter start or imports). wrk is
bounded by time, not count; its CPU is the rusage of the whole wrk process. Runs are interleaved
(client by client within each repeat) and figures are medians over --repeats.

Run:  .venv/bin/python -m bench.loadgen_clients [--repeats 3] [--requests 2000]
Writes bench/results/loadgen_clients.json and bench/results/loadgen_clients.md.
"""
from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import platform
import re
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
PATH = "/v1/select"
REPLY_BODY = b'{"model":"m-07"}'
REPLY = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(REPLY_BODY)
         + REPLY_BODY)
CLIENTS = ("hand-written", "httpx", "aiohttp", "wrk")
CONCURRENCY = (1, 16)
MAX_SECONDS = 20.0  # every child stops by itself after this, whatever its count


def make_body(i: int) -> dict:
    """A ~200-byte select request, different each time (as the bench's prompts are)."""
    return {"prompt": f"Question {i}: which of the following best describes the role of enzymes in "
                      f"metabolic pathways? Answer with one letter. ({i * 7919 % 100003})",
            "max_cost": 1.5, "top_k": 3, "tags": ["science", "mmlu-pro"]}


# ---- the trivial server (its own process) -------------------------------------------------------

class _Answer(asyncio.Protocol):
    """Reads whole requests (headers + Content-Length body) and answers each with REPLY, keep-alive."""

    def connection_made(self, transport):
        self.transport, self.buffer = transport, b""

    def data_received(self, data):
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            match = re.search(rb"(?i)\r\ncontent-length:\s*(\d+)", self.buffer[:end + 2])
            total = end + 4 + (int(match.group(1)) if match else 0)
            if len(self.buffer) < total:
                return
            self.buffer = self.buffer[total:]
            self.transport.write(REPLY)


def serve(port: int) -> None:
    async def main():
        server = await asyncio.get_running_loop().create_server(_Answer, "127.0.0.1", port, backlog=256)
        async with server:
            await server.serve_forever()

    asyncio.run(main())


# ---- one client run (its own process) -----------------------------------------------------------

async def _closed_loop(send, concurrency: int, total: int) -> int:
    counter, done = iter(range(total)), 0
    deadline = time.perf_counter() + MAX_SECONDS

    async def worker():
        nonlocal done
        for i in counter:
            if time.perf_counter() >= deadline:
                return
            status = await send(make_body(i))
            if status != 200:
                raise RuntimeError(f"status {status}")
            done += 1

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return done


async def _run_client(name: str, url: str, concurrency: int, total: int) -> dict:
    if name == "hand-written":
        from bench.http_client import LoopbackHttpClient

        session = LoopbackHttpClient(url)

        async def send(body):
            return await session.request("POST", PATH, body)
    elif name == "httpx":
        import httpx

        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        session = httpx.AsyncClient(base_url=url, limits=limits, timeout=10.0)

        async def send(body):
            return (await session.post(PATH, json=body)).status_code
    elif name == "aiohttp":
        import aiohttp

        session = aiohttp.ClientSession(base_url=url, connector=aiohttp.TCPConnector(limit=concurrency),
                                        timeout=aiohttp.ClientTimeout(total=10.0))

        async def send(body):
            async with session.post(PATH, json=body) as response:
                await response.read()
                return response.status
    else:
        raise ValueError(name)
    async with session:
        await _closed_loop(send, concurrency, min(total, 50))  # warm-up: connections opened, code paths hot
        cpu0, wall0 = time.process_time(), time.perf_counter()
        done = await _closed_loop(send, concurrency, total)
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    return {"requests": done, "cpu_s": cpu, "wall_s": wall}


def child(name: str, url: str, concurrency: int, total: int) -> dict:
    """Runs one client in a fresh interpreter and returns its figures."""
    out = subprocess.run([sys.executable, "-m", "bench.loadgen_clients", "--child", name, "--url", url,
                          "--concurrency", str(concurrency), "--requests", str(total)],
                         cwd=ROOT, capture_output=True, text=True, timeout=MAX_SECONDS + 30, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def run_wrk(url: str, concurrency: int, seconds: int) -> dict:
    """wrk, one thread, `concurrency` connections, for `seconds`; CPU from the reaped process's rusage."""
    script = Path(tempfile.mkdtemp()) / "post.lua"
    body = json.dumps(make_body(1))
    script.write_text(f'wrk.method = "POST"\nwrk.body = {json.dumps(body)}\n'
                      'wrk.headers["Content-Type"] = "application/json"\n')
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = subprocess.run(["wrk", "-t1", f"-c{concurrency}", f"-d{seconds}s", "-s", str(script), url + PATH],
                         capture_output=True, text=True, timeout=seconds + 30, check=True).stdout
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    shutil.rmtree(script.parent)
    requests = int(re.search(r"(\d+) requests in", out).group(1))
    if "Non-2xx" in out or "Socket errors" in out:
        raise RuntimeError(f"wrk saw errors:\n{out}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"requests": requests, "cpu_s": cpu, "wall_s": seconds}


# ---- the driver ---------------------------------------------------------------------------------

def _server_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def measure(repeats: int, total: int, wrk_seconds: int) -> dict:
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen([sys.executable, "-m", "bench.loadgen_clients", "--serve", str(port)], cwd=ROOT)
    clients = [c for c in CLIENTS  # those present: aiohttp is not a project dependency, wrk comes from apt
               if (shutil.which("wrk") if c == "wrk" else c != "aiohttp" or importlib.util.find_spec("aiohttp"))]
    runs: dict[str, list[dict]] = {}
    try:
        for _ in range(100):  # up to 5 s for the server to listen
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
                break
            except OSError:
                time.sleep(0.05)
        for repeat in range(repeats):
            for concurrency in CONCURRENCY:
                for name in clients:
                    server_cpu0 = _server_cpu(server.pid)
                    fig = (run_wrk(url, concurrency, wrk_seconds) if name == "wrk"
                           else child(name, url, concurrency, total))
                    fig["server_cpu_s"] = _server_cpu(server.pid) - server_cpu0
                    runs.setdefault(f"{name} c={concurrency}", []).append(fig)
                    print(f"repeat {repeat + 1} c={concurrency} {name}: {fig['requests']} req, "
                          f"{fig['cpu_s'] / fig['requests'] * 1e6:.0f} CPU-us/req, "
                          f"{fig['requests'] / fig['wall_s']:.0f} req/s", file=sys.stderr)
    finally:
        server.terminate()
        server.wait(timeout=10)
    medians = {}
    for key, figs in runs.items():
        medians[key] = {
            "cpu_us_per_request": statistics.median(f["cpu_s"] / f["requests"] * 1e6 for f in figs),
            "requests_per_s": statistics.median(f["requests"] / f["wall_s"] for f in figs),
            "server_cpu_us_per_request": statistics.median(f["server_cpu_s"] / f["requests"] * 1e6 for f in figs),
            "requests": statistics.median(f["requests"] for f in figs),
        }
    return {"runs": runs, "medians": medians}


def versions() -> dict:
    found = {"python": platform.python_version()}
    for module in ("httpx", "aiohttp"):
        try:
            found[module] = __import__(module).__version__
        except ImportError:
            found[module] = None
    if shutil.which("wrk"):
        found["wrk"] = subprocess.run(["wrk", "-v"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                      text=True).stdout.split("[")[0].strip()
    return found


def write(result: dict) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "loadgen_clients.json").write_text(json.dumps(result, indent=2) + "\n")
    hand = {c: result["medians"][f"hand-written c={c}"]["cpu_us_per_request"] for c in CONCURRENCY}
    missing = [name for name in CLIENTS if f"{name} c={CONCURRENCY[0]}" not in result["medians"]]
    lines = [
        "# Load generator clients: client CPU per request against a trivial loopback server",
        "",
        f"Command: `{result['command']}`",
        "",
        f"Machine: {result['machine']}; load average {result['loadavg_at_start']} at start, "
        f"{result['loadavg_at_end']} at end (shared with other work). Versions: {', '.join(f'{k} {v}' for k, v in result['versions'].items())}.",
        "",
        f"Closed loop of POST {PATH} (~{result['request_body_bytes']}-byte JSON body, different per request; wrk "
        f"sends one fixed body) to a raw asyncio server in its own process answering a {len(REPLY_BODY)}-byte "
        f"JSON body. Python clients: {result['requests_per_run']} requests per run after a 50-request warm-up, "
        f"CPU = the client process's time around the loop; wrk: {result['wrk_seconds']} s per run, CPU = "
        f"its rusage. Medians of {result['repeats']} interleaved repeats. Client and server share the "
        "machine's cores, so req/s is bounded by both; the server column shows the server's own cost "
        "(10 ms clock ticks, rough)." + (f" Not measured (not installed): {', '.join(missing)}." if missing else ""),
        "",
        "| client | c | client CPU µs/req | vs hand-written | req/s | server CPU µs/req |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for concurrency in CONCURRENCY:
        for name in CLIENTS:
            m = result["medians"].get(f"{name} c={concurrency}")
            if m:
                lines.append(f"| {name} | {concurrency} | {m['cpu_us_per_request']:.0f} | "
                             f"{m['cpu_us_per_request'] / hand[concurrency]:.2f}x | {m['requests_per_s']:.0f} | "
                             f"{m['server_cpu_us_per_request']:.0f} |")
    (RESULTS / "loadgen_clients.md").write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--requests", type=int, default=2000, help="requests per Python-client run")
    parser.add_argument("--wrk-seconds", type=int, default=2)
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--child", choices=CLIENTS[:3], help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--concurrency", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve)
        return
    if args.child:
        print(json.dumps(asyncio.run(_run_client(args.child, args.url, args.concurrency, args.requests))))
        return
    load_at_start = " ".join(f"{x:.2f}" for x in os.getloadavg())
    result = measure(args.repeats, args.requests, args.wrk_seconds)
    result.update(
        loadavg_at_start=load_at_start, loadavg_at_end=" ".join(f"{x:.2f}" for x in os.getloadavg()),
        command=" ".join([".venv/bin/python -m bench.loadgen_clients", *sys.argv[1:]]),
        machine=f"{platform.machine()}, {os.cpu_count()} CPUs ({platform.processor() or platform.platform()})",
        versions=versions(), repeats=args.repeats, requests_per_run=args.requests, wrk_seconds=args.wrk_seconds,
        request_body_bytes=len(json.dumps(make_body(1000)).encode()),
    )
    write(result)
    print((RESULTS / "loadgen_clients.md").read_text())


if __name__ == "__main__":
    main()
