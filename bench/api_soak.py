"""Read-API soak: twice the benchmark's rate for minutes, then idle, then a probe; beside the 1x rate.

    python -m bench.api_soak [--rate 2000 --seconds 180 --idle 30 --probe 20 --baseline-rate 1000 ...]

The README's read-API benchmark (bench/api_mix.py) offers 1,000 requests/s; this offers twice that,
open loop (requests leave at fixed times whatever the answers do; latency counts from when each was
due), with the same mix without search (see ``SOAK_MIX``), request generator and API process
(``bench.api_mix``), over a smaller read
model than the benchmark's (``--tracks`` etc., loaded once by ``bench.api_load`` and reused). Many
keep-alive connections (``--connections``), as many clients would open, so the queue forms in the
server, where backpressure (api/backpressure.py) can see it, not in the generator.

Each run, in a fresh API process: a probe at ``--probe-rate`` (the quiet baseline), the load, an idle
pause, the probe again (recovery). Reported per run: answers by status (200/307 served, 503 shed by
backpressure, 429, anything else an error), latency p50/p99 per window of the load (all answers, and
served ones), the RSS of the API process sampled every few seconds (start, middle and end of the load,
after the idle pause and the probe, and its slope over the load), and the probes before and after.
The baseline is the same sequence at ``--baseline-rate`` (default the benchmark's 1,000/s); ratios of
the two are printed at the end. Goals checked: no errors other than 503/429, the probe after the load
within 2x of the one before (p99), RSS slope under 1 MB/min.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import aiohttp

from api.app import open_pool
from bench.api_load import Sizes, cached, database_url, load, upgrade
from bench.api_mix import (
    ADMIN,
    MIX,
    SEARCHES,
    CpuMeter,
    Req,
    api_process,
    harvest_cursors,
    open_loop,
    percentile,
    sample,
    schedule,
    search_term,
    settings,
)
from bench.api_mix import Samples as MixSamples
from projector.ranking import refresh_top_tracks
from runtime.logging import configure

# The benchmark's mix without search: with search in it the README's figures show every path, the
# asyncpg floor included, falling behind even 1x, so 2x of it would measure only that. --mix
# search=10 puts it back.
SOAK_MIX = {"search": 0}


@dataclass
class Phase:
    """What one phase of a run got back: statuses, and (due time, latency, status) of each answer."""

    name: str
    statuses: Counter[str] = field(default_factory=Counter)
    answers: list[tuple[float, float, str]] = field(default_factory=list)
    backlog: int = 0
    cpu: str = ""

    def latencies(self, served_only: bool = False, since: float = 0.0, until: float = float("inf")) -> list[float]:
        """Sorted latencies (ms) of answers due in [since, until)."""
        return sorted(
            lat * 1000
            for due, lat, status in self.answers
            if since <= due < until and (not served_only or status in ("200", "307"))
        )


@dataclass
class Soak:
    """One run: its rate, phases and RSS samples (seconds since start, MiB)."""

    rate: float
    phases: dict[str, Phase] = field(default_factory=dict)
    rss: list[tuple[float, str, float]] = field(default_factory=list)
    load_start: float = 0.0
    shed: dict[str, float] = field(default_factory=dict)


async def shed_counts(session: aiohttp.ClientSession) -> dict[str, float]:
    """The API's ``plyr_api_shed_total`` by reason, read from its /metrics."""
    async with session.get("/metrics") as resp:
        text = await resp.text()
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("plyr_api_shed_total{"):
            reason = line.split('reason="', 1)[1].split('"', 1)[0]
            out[reason] = float(line.rsplit(" ", 1)[1])
    return out


def rss_mib(pid: int) -> float:
    """The resident set of ``pid`` in MiB."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


async def sample_rss(pid: int, soak: Soak, label: list[str], every: float, start: float) -> None:
    """Append the API's RSS to ``soak.rss`` every ``every`` seconds, tagged with the current phase."""
    while True:
        soak.rss.append((time.perf_counter() - start, label[0], rss_mib(pid)))
        await asyncio.sleep(every)


def slope_mib_per_min(points: Sequence[tuple[float, float]]) -> float:
    """Least-squares slope of (seconds, MiB), in MiB per minute."""
    n = len(points)
    if n < 2:
        return float("nan")
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    var = sum((x - mx) ** 2 for x, _ in points)
    return 60 * sum((x - mx) * (y - my) for x, y in points) / var if var else float("nan")


async def run_soak(dsn: str, args: argparse.Namespace, rate: float, samples: MixSamples, mix: dict[str, int]) -> Soak:
    """Probe, load at ``rate``, idle, probe, against a fresh API process."""
    soak = Soak(rate)
    load_reqs = schedule(int(rate * args.seconds), mix, samples, seed=1)
    probe_reqs = schedule(int(args.probe_rate * args.probe), mix, samples, seed=4)
    warm = schedule(int(args.probe_rate * 5), mix, samples, seed=2)
    label = ["start"]
    async with (
        api_process(dsn, 1) as (base, proc),
        # Idle connections are dropped before uvicorn's 5 s keep-alive closes them under a request.
        aiohttp.ClientSession(
            base,
            connector=aiohttp.TCPConnector(limit=args.connections, keepalive_timeout=3),
            # Clients give up: without it, past the generator's capacity the requests queued for a
            # connection grow without bound inside this process and the run measures only that.
            timeout=aiohttp.ClientTimeout(total=args.client_timeout),
        ) as session,
    ):

        async def call(req: Req) -> str:
            stream = req.kind == "stream"
            try:
                async with session.request("HEAD" if stream else "GET", req.url, allow_redirects=False) as resp:
                    await resp.read()
                    return str(resp.status)
            except TimeoutError:
                return "timeout"
            except (aiohttp.ClientError, OSError) as err:
                return type(err).__name__

        async def phase(name: str, reqs: list[Req], at: float) -> Phase:
            label[0] = name
            got = Phase(name)

            def observe(req: Req, due: float, latency: float, status: object) -> None:
                got.statuses[str(status)] += 1
                got.answers.append((due - at, latency, str(status)))

            meter = CpuMeter(proc.pid)
            run = await open_loop(name, reqs, at_rate[name], call, args.drain, observe)
            got.backlog = sum(run.backlog.values())
            got.cpu = meter.summary()
            soak.phases[name] = got
            return got

        at_rate = {"warmup": args.probe_rate, "probe before": args.probe_rate, "load": rate}
        at_rate["probe after"] = args.probe_rate
        start = time.perf_counter()
        sampler = asyncio.create_task(sample_rss(proc.pid, soak, label, args.rss_every, start))
        try:
            await phase("warmup", warm, time.perf_counter())
            await phase("probe before", probe_reqs, time.perf_counter())
            soak.load_start = time.perf_counter() - start
            print(f"  {rate:,.0f}/s: load for {args.seconds:.0f} s ...", flush=True)
            await phase("load", load_reqs, time.perf_counter())
            soak.shed = await shed_counts(session)
            label[0] = "idle"
            await asyncio.sleep(args.idle)
            await phase("probe after", probe_reqs, time.perf_counter())
            label[0] = "end"
            soak.rss.append((time.perf_counter() - start, "end", rss_mib(proc.pid)))
        finally:
            sampler.cancel()
    return soak


def _fmt(values: Sequence[float]) -> str:
    if not values:
        return f"{'-':>9}{'-':>9}"
    return f"{percentile(values, 0.5):>9.1f}{percentile(values, 0.99):>9.1f}"


def report(soak: Soak, window: float) -> dict[str, float]:
    """Print one run; return the figures the comparison needs."""
    load = soak.phases["load"]
    total = sum(load.statuses.values())
    served = sum(n for s, n in load.statuses.items() if s in ("200", "307"))
    shed = sum(n for s, n in load.statuses.items() if s in ("503", "429"))
    gave_up = load.statuses.get("timeout", 0)
    errors = total - served - shed - gave_up
    print(f"\n== {soak.rate:,.0f} requests/s offered for {len(load.answers) / soak.rate:.0f} s")
    print(f"   answers: {dict(sorted(load.statuses.items()))}; backlog (unanswered at the end) {load.backlog}")
    print(
        f"   served {served / total:.1%}, shed (503/429) {shed / total:.1%},"
        f" not answered within the client's timeout {gave_up / total:.1%}, errors {errors}"
    )
    print(f"   the API's 503s by reason (plyr_api_shed_total): {soak.shed}")
    print(f"   {load.cpu}")
    print(
        f"   {'window':<14}{'sent':>8}{'served/s':>10}{'shed':>8}{'all p50':>9}{'p99':>9}{'served p50':>11}{'p99':>9}"
    )
    end = max((due for due, _, _ in load.answers), default=0.0)
    w = 0.0
    while w <= end:
        part = [a for a in load.answers if w <= a[0] < w + window]
        ok = sum(1 for a in part if a[2] in ("200", "307"))
        dropped = sum(1 for a in part if a[2] in ("503", "429"))
        span = min(window, end - w) or window
        label = f"{w:.0f}-{w + min(window, end - w):.0f} s"
        print(
            f"   {label:<14}{len(part):>8}{ok / span:>10.0f}{dropped:>8}{_fmt(load.latencies(False, w, w + window))}"
            f"  {_fmt(load.latencies(True, w, w + window))}"
        )
        w += window
    for name in ("probe before", "probe after"):
        p = soak.phases[name]
        print(f"   {name:<14}{sum(p.statuses.values()):>8} answers {dict(sorted(p.statuses.items()))}; "
              f"p50/p99 ms {_fmt(p.latencies(True)).strip()}")  # fmt: skip
    in_load = [(t, mib) for t, phase, mib in soak.rss if phase == "load"]
    marks = {
        "load start": in_load[0][1] if in_load else float("nan"),
        "load middle": in_load[len(in_load) // 2][1] if in_load else float("nan"),
        "load end": in_load[-1][1] if in_load else float("nan"),
        "after idle": next((m for _, ph, m in reversed(soak.rss) if ph == "idle"), float("nan")),
        "end": soak.rss[-1][2] if soak.rss else float("nan"),
    }
    slope = slope_mib_per_min(in_load)
    # The first minute grows caches and buffers to their working size; a leak keeps growing after it.
    settled = [(t, m) for t, m in in_load if t - soak.load_start >= 60]
    settled_slope = slope_mib_per_min(settled)
    print("   RSS MiB: " + ", ".join(f"{k} {v:.0f}" for k, v in marks.items()))
    print(f"   RSS slope over the load {slope:+.2f} MiB/min; after its first minute {settled_slope:+.2f} MiB/min")
    before = soak.phases["probe before"].latencies(True)
    after = soak.phases["probe after"].latencies(True)
    return {
        "served_rate": served / (len(load.answers) / soak.rate) if load.answers else 0.0,
        "shed": shed / total if total else 0.0,
        "errors": float(errors),
        "gave_up": gave_up / total if total else 0.0,
        "p99_served": percentile(load.latencies(True), 0.99),
        "p99_all": percentile(load.latencies(False), 0.99),
        "recovery": percentile(after, 0.99) / percentile(before, 0.99) if before and after else float("nan"),
        "slope": settled_slope if settled else slope,
        "rss_end": marks["end"],
    }


async def main_async(args: argparse.Namespace) -> int:
    sizes = Sizes(args.tracks, args.artists, args.likes, args.lists)
    built = await cached(ADMIN, sizes)
    if built is None:
        print(f"loading {sizes} ...", flush=True)
        built = await load(ADMIN, sizes, lambda line: print("  " + line, flush=True))
    elif applied := await upgrade(ADMIN):
        print(f"applied the migrations added since: {', '.join(applied)}")
    dsn = database_url(ADMIN)
    api = settings("http://127.0.0.1")
    mix = {k: v for k, v in {**MIX, **SOAK_MIX, **args.mix}.items() if v > 0}
    async with open_pool(dsn, api) as pool:
        await refresh_top_tracks(pool, api.schema_name)
        samples = await sample(pool)
        samples.cursors = await harvest_cursors(pool, api)
        rng = random.Random(3)
        samples.searches = [search_term(rng, samples) for _ in range(SEARCHES)]
    print(f"read model {sizes}; mix {mix}; {args.connections} connections; API defaults"
          f" (API_MAX_IN_FLIGHT 256, API_REQUEST_TIMEOUT_SECONDS 5, API_STATEMENT_TIMEOUT_SECONDS 3)")  # fmt: skip
    figures = {}
    for rate in (args.baseline_rate, args.rate):
        figures[rate] = report(await run_soak(dsn, args, rate, samples, mix), args.window)
    base, soak = figures[args.baseline_rate], figures[args.rate]
    print(f"\n{args.rate:,.0f}/s vs {args.baseline_rate:,.0f}/s (the baseline):")
    for key, what in (
        ("served_rate", "served per second"),
        ("p99_served", "p99 of served answers (ms)"),
        ("p99_all", "p99 of all answers (ms)"),
    ):
        ratio = soak[key] / base[key] if base[key] else float("nan")
        print(f"  {what:<28} {soak[key]:>10.1f} vs {base[key]:>10.1f}  ({ratio:.2f}x)")
    print(f"  {'shed share':<28} {soak['shed']:>10.1%} vs {base['shed']:>10.1%}")
    print(f"  {'client timeouts share':<28} {soak['gave_up']:>10.1%} vs {base['gave_up']:>10.1%}")
    ok_errors = soak["errors"] == 0 and base["errors"] == 0
    ok_recovery = soak["recovery"] <= 2
    ok_memory = abs(soak["slope"]) < 1
    print(f"goal no errors other than 503/429: {'met' if ok_errors else 'NOT met'}")
    print(f"goal latency recovers (probe p99 after / before <= 2): {'met' if ok_recovery else 'NOT met'}"
          f" ({soak['recovery']:.2f}x; baseline {base['recovery']:.2f}x)")  # fmt: skip
    print(f"goal memory flat (RSS slope under 1 MiB/min after the first minute): {'met' if ok_memory else 'NOT met'}"
          f" ({soak['slope']:+.2f} MiB/min; baseline {base['slope']:+.2f})")  # fmt: skip
    return 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tracks", type=int, default=100_000)
    p.add_argument("--artists", type=int, default=10_000)
    p.add_argument("--likes", type=int, default=500_000)
    p.add_argument("--lists", type=int, default=20_000)
    p.add_argument("--rate", type=float, default=2000.0, help="requests per second offered (2x the benchmark's)")
    p.add_argument("--baseline-rate", type=float, default=1000.0, help="the baseline run's rate (the benchmark's)")
    p.add_argument("--seconds", type=float, default=180.0, help="length of the load")
    p.add_argument("--idle", type=float, default=30.0, help="pause after the load")
    p.add_argument("--probe", type=float, default=20.0, help="length of each probe")
    p.add_argument("--probe-rate", type=float, default=100.0)
    p.add_argument("--window", type=float, default=60.0, help="seconds per line of the latency table")
    p.add_argument("--rss-every", type=float, default=5.0)
    p.add_argument("--connections", type=int, default=512, help="keep-alive connections of the generator")
    p.add_argument("--client-timeout", type=float, default=10.0, help="seconds a client waits for an answer")
    p.add_argument("--drain", type=float, default=15.0, help="seconds to wait for answers after the last send")
    p.add_argument("--mix", default="", help=f"weights to change (default {MIX} with {SOAK_MIX})")
    args = p.parse_args()
    configure("WARNING", "json")
    args.mix = {k: int(v) for k, v in (part.split("=") for part in args.mix.split(",") if part)}
    if set(args.mix) - set(MIX):
        p.error(f"--mix: kinds are {', '.join(MIX)}")
    return asyncio.run(main_async(args))


if __name__ == "__main__":
    sys.exit(main())
