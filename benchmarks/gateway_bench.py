"""Gateway benchmark: wrk -c64 against a page of the running gateway and against a bare aiohttp
handler that returns the same bytes, in the same run (the baseline). "The same bytes" means the
same response: the body and the same headers (security headers, ETag, caching), so the ratio
measures what the gateway's own logic costs, not the size of its headers.

    python -m benchmarks.gateway_bench [--gateway http://127.0.0.1:8080] [--duration 30]

Needs a running stack with articles (``make run``) and Debian's ``wrk``. Prints req/s, p50 and
p99 latency for each target and the ratio gateway/baseline (target ≥ 0.8, p99 < 50 ms), and
writes the figures as JSON (``--json``).
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import textwrap
import time
import urllib.parse
import urllib.request

BARE_SERVER = textwrap.dedent('''
    import json, sys
    from aiohttp import web
    body = open(sys.argv[1], "rb").read()
    headers = json.loads(sys.argv[3])
    async def handler(request):
        return web.Response(body=body, headers=headers)
    app = web.Application()
    app.router.add_get("/{tail:.*}", handler)
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[2]), access_log=None, print=None)
''')


def wrk(url: str, duration: int, connections: int, threads: int) -> dict[str, float]:
    out = subprocess.run(["wrk", f"-t{threads}", f"-c{connections}", f"-d{duration}s", "--latency", url],
                         check=True, capture_output=True, text=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))

    def pct(p: str) -> float:
        m = re.search(rf"^\s+{p}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        value, unit = float(m.group(1)), m.group(2)
        return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value

    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {"rps": rps, "p50_ms": pct("50"), "p99_ms": pct("99"), "non_2xx": int(errors.group(1)) if errors else 0}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gateway", default="http://127.0.0.1:8080")
    parser.add_argument("--path", default=None, help="page to load (default: the newest article)")
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds per target (median kept)")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--port", type=int, default=18080, help="port of the bare baseline server")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    if not shutil.which("wrk"):
        print("wrk is not installed (apt-get install wrk)", file=sys.stderr)
        return 2
    paths = [args.path] if args.path else []
    if not paths:
        with urllib.request.urlopen(f"{args.gateway}/api/v1/articles?limit=1") as r:
            items = json.load(r)["items"]
        if not items:
            print("no articles: run `make run` first", file=sys.stderr)
            return 2
        paths = [urllib.parse.urlsplit(items[0]["url"]).path, "/"]
    results = {}
    for path in paths:
        with urllib.request.urlopen(args.gateway + path) as r:
            body = r.read()
            skip = {"date", "server", "content-length", "transfer-encoding", "connection", "keep-alive"}
            headers = {k: v for k, v in r.headers.items() if k.lower() not in skip}
        tmp = f"/tmp/kazpost-bench-{abs(hash(path))}.html"
        with open(tmp, "wb") as f:
            f.write(body)
        bare = subprocess.Popen([sys.executable, "-c", BARE_SERVER, tmp, str(args.port), json.dumps(headers)])
        try:
            for _ in range(50):
                try:
                    urllib.request.urlopen(f"http://127.0.0.1:{args.port}/").read()
                    break
                except OSError:
                    time.sleep(0.1)
            wrk(args.gateway + path, 3, args.connections, args.threads)  # warm-up
            # Alternate the two targets over several rounds and keep the median round of each,
            # so a burst of other load on the machine does not decide the ratio.
            runs: dict[str, list[dict[str, float]]] = {"gateway": [], "baseline": []}
            for _ in range(args.rounds):
                runs["gateway"].append(wrk(args.gateway + path, args.duration, args.connections, args.threads))
                runs["baseline"].append(wrk(f"http://127.0.0.1:{args.port}{path}", args.duration, args.connections, args.threads))
            gateway, baseline = (sorted(runs[k], key=lambda r: r["rps"])[len(runs[k]) // 2] for k in ("gateway", "baseline"))
        finally:
            bare.terminate()
            bare.wait()
        ratio = gateway["rps"] / baseline["rps"]
        results[path] = {"gateway": gateway, "baseline": baseline, "ratio": ratio, "bytes": len(body)}
        print(f"{path[:60]:<60} {len(body):>7} B")
        print(f"  gateway : {gateway['rps']:>8.0f} req/s  p50 {gateway['p50_ms']:6.2f} ms  p99 {gateway['p99_ms']:6.2f} ms  non-2xx {gateway['non_2xx']}")
        print(f"  baseline: {baseline['rps']:>8.0f} req/s  p50 {baseline['p50_ms']:6.2f} ms  p99 {baseline['p99_ms']:6.2f} ms")
        print(f"  ratio {ratio:.2f} (target ≥ 0.80), p99 {'<' if gateway['p99_ms'] < 50 else '≥'} 50 ms")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
