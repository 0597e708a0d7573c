"""Load test of `seq2seq serve` on loopback: concurrent clients, outputs checked against
Translator.translate, latency percentiles, throughput and the server's memory.

Usage, from the repository root:

    python -m bench.serve_load CHECKPOINT [--clients 20] [--requests 300]
                               [--sentences data/toy/test.src] [--per-request 1-4]
                               [--beam-size N] [--server-args "--max-batch 1"] [--json]

The server runs as a subprocess (`python -m seq2seq serve CHECKPOINT --port 0`, so it
picks a free port). Each of --clients threads sends its share of --requests POST
/translate requests, each with 1 to 4 sentences drawn (seeded) from --sentences, on a
keep-alive connection; every answer must be 200 with the translations translate()
gives the same sentences. Memory is the server's resident set (VmRSS) after one warm-up
request and after the load.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import random
import re
import shlex
import statistics
import subprocess
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def start_server(checkpoint: str, extra: list[str]) -> tuple[subprocess.Popen, int]:
    """The server subprocess and its port, once it says where it listens."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "seq2seq", "serve", checkpoint, "--port",
                             "0", "--device", "cpu", *extra], cwd=ROOT, env=env,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    for line in proc.stderr:
        found = re.search(r"at http://127\.0\.0\.1:(\d+)/", line)
        if found:
            threading.Thread(target=proc.stderr.read, daemon=True).start()  # keep it drained
            return proc, int(found.group(1))
        if time.monotonic() > deadline:
            break
    proc.kill()
    raise SystemExit(f"the server did not start: {line.strip() if line else 'no output'}")


def rss_mib(pid: int) -> float:
    """The process's resident memory in MiB (Linux /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def post(conn: http.client.HTTPConnection, body: dict) -> tuple[int, dict]:
    conn.request("POST", "/translate", json.dumps(body), {"Content-Type": "application/json"})
    answer = conn.getresponse()
    return answer.status, json.loads(answer.read())


def client(port: int, jobs: list[list[str]], beam: int | None, out: list) -> None:
    """Send each job on one keep-alive connection; append (seconds, status, answer, job)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    for texts in jobs:
        body = {"text": texts} if beam is None else {"text": texts, "beam_size": beam}
        start = time.perf_counter()
        try:
            status, answer = post(conn, body)
        except (OSError, http.client.HTTPException, ValueError) as error:
            status, answer = -1, {"error": f"{type(error).__name__}: {error}"}
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        out.append((time.perf_counter() - start, status, answer, texts))
    conn.close()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def run(args) -> dict:
    from seq2seq.translate import Translator

    lines = [s for s in Path(args.sentences).read_text(encoding="utf-8").splitlines()
             if s.strip()]
    low, high = (int(x) for x in args.per_request.split("-"))
    rng = random.Random(0)
    jobs = [rng.sample(lines, rng.randint(low, high)) for _ in range(args.requests)]
    translator = Translator.from_checkpoint(args.checkpoint, device="cpu")
    used = sorted({s for job in jobs for s in job})
    reference = dict(zip(used, translator.translate(used, beam_size=args.beam_size),
                         strict=True))
    beam = translator.options(args.beam_size)[0]
    extra = ["--max-beam", str(max(16, beam)), *shlex.split(args.server_args)]
    proc, port = start_server(args.checkpoint, extra)
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        post(conn, {"text": [lines[0]], "beam_size": beam})  # warm-up
        conn.close()
        rss_before = rss_mib(proc.pid)
        shares = [jobs[i :: args.clients] for i in range(args.clients)]
        results: list = []
        threads = [threading.Thread(target=client, args=(port, share, beam, results))
                   for share in shares]
        start = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - start
        rss_after = rss_mib(proc.pid)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        conn.request("GET", "/health")
        health = json.loads(conn.getresponse().read())
        conn.close()
    finally:
        proc.terminate()
        proc.wait(30)
    errors = [r for r in results if r[1] != 200]
    wrong = [r for r in results if r[1] == 200
             and r[2]["translations"] != [reference[s] for s in r[3]]]
    latency = [r[0] * 1000 for r in results]
    sentences = sum(len(r[3]) for r in results)
    return {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "host": f"{platform.node()}, {_cpu()}, {os.cpu_count()} logical CPUs",
        "checkpoint": args.checkpoint, "server_args": args.server_args, "beam_size": beam,
        "clients": args.clients,
        "requests": len(results), "sentences": sentences, "errors": len(errors),
        "error_examples": [r[2].get("error") for r in errors[:3]],
        "mismatches": len(wrong), "latency_ms": {
            "p50": percentile(latency, 50), "p90": percentile(latency, 90),
            "p99": percentile(latency, 99), "mean": statistics.fmean(latency)},
        "wall_s": wall, "requests_per_s": len(results) / wall,
        "sentences_per_s": sentences / wall, "batches": health["batches"] - 1,  # - warm-up
        "rss_mib": {"before": rss_before, "after": rss_after}}


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def report(r: dict) -> str:
    lat = r["latency_ms"]
    return "\n".join([
        f"{r['date']}, {r['host']}",
        f"{r['checkpoint']} {r['server_args']}".rstrip() + f", beam {r['beam_size']}: "
        f"{r['clients']} clients, {r['requests']} requests, {r['sentences']} sentences",
        f"errors {r['errors']}, outputs differing from translate() {r['mismatches']}",
        f"latency ms: p50 {lat['p50']:.1f}, p90 {lat['p90']:.1f}, p99 {lat['p99']:.1f}, mean "
        f"{lat['mean']:.1f}",
        f"throughput: {r['requests_per_s']:.1f} requests/s, {r['sentences_per_s']:.1f} "
        f"sentences/s over {r['wall_s']:.1f} s; {r['batches']} batches "
        f"({r['sentences'] / max(1, r['batches']):.1f} sentences each)",
        f"server RSS: {r['rss_mib']['before']:.0f} MiB before, {r['rss_mib']['after']:.0f} MiB "
        "after",
    ])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint")
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--sentences", default=str(ROOT / "data/toy/test.src"))
    parser.add_argument("--per-request", default="1-4", help="sentences per request, LOW-HIGH")
    parser.add_argument("--beam-size", type=int, default=None,
                        help="default: the checkpoint's decode.beam_size")
    parser.add_argument("--server-args", default="",
                        help='more `seq2seq serve` options, e.g. "--max-batch 1"')
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)
    result = run(args)
    print(json.dumps(result, indent=2) if args.json else report(result))
    if result["errors"]:
        print(f"errors, e.g.: {result['error_examples']}", file=sys.stderr)
    return 1 if result["errors"] or result["mismatches"] else 0


if __name__ == "__main__":
    sys.exit(main())
