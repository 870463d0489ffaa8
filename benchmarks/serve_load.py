"""Load test for `rnnlab serve`: N WebSocket typists at a human rate against one server.

    python benchmarks/serve_load.py RUN --text ../shared/data/tinyshakespeare.txt \\
        --typists 1,10,50,100 --seconds 30 --out docs/results/serve-lstm.json

For each N, starts `rnnlab serve RUN` on 127.0.0.1 in its own process, then N typists in
this process (asyncio + websockets), each typing the held-out end of the text (the last 5%,
the test split `rnnlab train` never trains on) from its own random place, one key every
1/rate seconds on average (uniform jitter ±50%), with a backspace for 5% of the keys and a
fresh text after each --reset-after characters (100: a short message). Every keystroke
sends the whole text with an id;
an answer with id m answers every keystroke <= m still waiting (the server answers the
latest text when keys arrive faster than it computes). Latency is what the client sees:
keystroke sent -> its answer received. Reported per N: p50/p95/p99/max latency, keystrokes,
answers, errors (error answers, keystrokes never answered, dropped connections), the
server's resident memory sampled every second, and how late the client's own timers fired
(a loaded client inflates latency; see docs/results/serve.md).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import websockets


def percentile(xs: list[float], q: float) -> float:
    if not xs:
        return float("nan")
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q / 100 * len(xs)))]


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


class Stats:
    def __init__(self) -> None:
        self.latency: list[float] = []
        self.keys = self.answers = self.errors = self.lost = self.dropped = 0
        self.lag: list[float] = []


async def typist(url: str, text: str, seconds: float, rate: float, reset: int, seed: int,
                 stats: Stats) -> None:
    rng = random.Random(seed)
    pos = rng.randrange(len(text) - 1000)
    pending: dict[int, float] = {}
    try:
        async with websockets.connect(url, max_size=2**20) as ws:
            async def receive() -> None:
                async for raw in ws:
                    msg, now = json.loads(raw), time.perf_counter()
                    if "error" in msg:
                        stats.errors += 1
                        continue
                    stats.answers += 1
                    for key in [k for k in pending if k <= msg["id"]]:
                        stats.latency.append((now - pending.pop(key)) * 1e3)

            reader = asyncio.create_task(receive())
            typed, key, start = "", 0, time.perf_counter()
            due = start + rng.uniform(0, 1 / rate)
            while due < start + seconds:
                await asyncio.sleep(max(0.0, due - time.perf_counter()))
                stats.lag.append((time.perf_counter() - due) * 1e3)
                if len(typed) >= reset and typed[-1] in " \n":
                    typed = ""
                elif typed and rng.random() < 0.05:
                    typed = typed[:-1]
                else:
                    typed += text[pos % len(text)]
                    pos += 1
                key += 1
                pending[key] = time.perf_counter()
                await ws.send(json.dumps({"text": typed, "id": key}))
                stats.keys += 1
                due += rng.uniform(0.5, 1.5) / rate
            deadline = time.perf_counter() + 5.0
            while pending and time.perf_counter() < deadline:
                await asyncio.sleep(0.02)
            stats.lost += len(pending)
            reader.cancel()
    except (OSError, websockets.WebSocketException):
        stats.dropped += 1
        stats.lost += len(pending)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(runs: list[str], port: int, extra: list[str]) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "rnnlab", "serve", *runs, "--port", str(port), *extra]
    proc = subprocess.Popen(cmd, stderr=subprocess.DEVNULL)
    for _ in range(600):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1).read()
            return proc
        except OSError:
            if proc.poll() is not None:
                raise SystemExit(f"the server exited with {proc.returncode}") from None
            time.sleep(0.1)
    proc.kill()
    raise SystemExit("the server did not start in 60 s")


async def run_point(port: int, pid: int, text: str, n: int, seconds: float,
                    rate: float, reset: int) -> dict:
    stats, rss = Stats(), []
    t0 = time.perf_counter()

    async def sample() -> None:
        while True:
            rss.append((round(time.perf_counter() - t0, 1), round(rss_mb(pid), 1)))
            await asyncio.sleep(1.0)

    sampler = asyncio.create_task(sample())
    url = f"ws://127.0.0.1:{port}/v1/type"
    await asyncio.gather(*(typist(url, text, seconds, rate, reset, 1000 * n + i, stats)
                           for i in range(n)))
    sampler.cancel()
    stats_url = f"http://127.0.0.1:{port}/v1/stats"
    body = await asyncio.to_thread(lambda: urllib.request.urlopen(stats_url, timeout=5).read())
    server = json.loads(body)
    lat = stats.latency
    return {"typists": n, "seconds": seconds, "keys": stats.keys, "answers": stats.answers,
            "answered_keys": len(lat), "p50_ms": percentile(lat, 50),
            "p95_ms": percentile(lat, 95), "p99_ms": percentile(lat, 99),
            "max_ms": max(lat, default=float("nan")),
            "mean_ms": statistics.fmean(lat) if lat else float("nan"),
            "errors": stats.errors, "lost": stats.lost, "dropped": stats.dropped,
            "client_lag_p95_ms": percentile(stats.lag, 95), "rss_mb": rss,
            "batching": server["batching"]}


def batch_mean(point: dict) -> float:
    b = sum(m["batches"] for m in point["batching"].values())
    return sum(m["steps"] for m in point["batching"].values()) / max(b, 1)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="+", help="run directories to serve (the first is typed to)")
    ap.add_argument("--text", required=True, help="the text whose last 5%% is typed")
    ap.add_argument("--typists", default="1,10,50,100", help="comma-separated N")
    ap.add_argument("--seconds", type=float, default=30.0, help="typing time per N")
    ap.add_argument("--rate", type=float, default=8.0, help="keystrokes per second each")
    ap.add_argument("--reset-after", type=int, default=100,
                    help="characters after which a typist starts a fresh text (a message)")
    ap.add_argument("--out", type=Path, help="write the results as JSON here")
    ap.add_argument("--server-args", default="", help="extra `rnnlab serve` options")
    args = ap.parse_args()
    full = Path(args.text).read_text(encoding="utf-8")
    text = full[int(len(full) * 0.95):]
    results = []
    for n in [int(x) for x in args.typists.split(",")]:
        port = free_port()
        proc = start_server(args.runs, port, args.server_args.split())
        try:
            load0 = os.getloadavg()[0]
            point = asyncio.run(run_point(port, proc.pid, text, n, args.seconds, args.rate,
                                          args.reset_after))
            point["loadavg_before"] = round(load0, 2)
        finally:
            proc.terminate()
            proc.wait(10)
        results.append(point)
        rss = [m for _, m in point["rss_mb"]]
        print(f"{n:4d} typists: p50 {point['p50_ms']:7.1f} ms  p95 {point['p95_ms']:7.1f}  "
              f"p99 {point['p99_ms']:7.1f}  keys {point['keys']:6d}  errors {point['errors']}"
              f"  lost {point['lost']}  RSS {rss[0]:.0f} -> {max(rss):.0f} MB  "
              f"batch {batch_mean(point):.1f}  "
              f"client lag p95 {point['client_lag_p95_ms']:.1f} ms  load {load0:.1f}",
              flush=True)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"command": " ".join(sys.argv), "runs": args.runs,
                                        "results": results}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
