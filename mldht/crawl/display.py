"""What the crawler shows: progress on stderr (a plain line or a rich bar), the summary,
and the plot (matplotlib)."""

from __future__ import annotations

import contextlib
import importlib
import itertools
import os
from collections import Counter
from typing import Any, TextIO

from .driver import Crawler, Snapshot
from .estimate import SizeEstimate
from .planner import format_version

__all__ = [
    "PlainProgress",
    "RichProgress",
    "draw_plot",
    "format_summary",
    "have_matplotlib",
    "have_rich",
    "summarize",
]


class PlainProgress:
    """One status line every ``interval`` seconds (for logs and pipes)."""

    def __init__(self, stream: TextIO, interval: float) -> None:
        self.stream = stream
        self.interval = interval
        self._next = 0.0

    def __call__(self, s: Snapshot) -> None:
        if s.elapsed + 1e-9 < self._next:
            return
        self._next = s.elapsed + self.interval
        with contextlib.suppress(BrokenPipeError, ValueError):
            peers = f" peers {s.peers_done}/{s.peers_planned}" if s.peers else ""
            self.stream.write(
                f"[{s.elapsed:6.0f}s] nodes {s.found} queried {s.queried} "
                f"responding {s.responders} bep51 {s.bep51} infohashes {s.infohashes}"
                f"{peers} queries {s.queries} ({s.qps:.0f}/s) in flight {s.in_flight}\n"
            )
            self.stream.flush()

    def close(self) -> None:
        pass


def clock(seconds: float) -> str:
    """``H:MM:SS``."""
    whole = max(0, int(seconds))
    return f"{whole // 3600}:{whole // 60 % 60:02d}:{whole % 60:02d}"


class RichProgress:
    """Live progress bars (rich) on a terminal: nodes queried out of found, and with
    ``--peers`` the get_peers lookups done out of planned. The clock is the crawl's
    (rich's own stops when a bar is full, though the crawl goes on)."""

    def __init__(self, stream: TextIO) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TextColumn

        self._progress = Progress(
            TextColumn("[bold]{task.description:5}"),
            BarColumn(),
            TextColumn("{task.completed}/{task.total} {task.fields[unit]}"),
            TextColumn("{task.fields[line]}"),
            TextColumn("{task.fields[clock]}"),
            console=Console(file=stream),
            transient=False,
        )
        self._task = self._progress.add_task("crawl", total=1, unit="queried", line="", clock="")
        self._peers: Any = None
        self._progress.start()

    def __call__(self, s: Snapshot) -> None:
        self._progress.update(
            self._task,
            completed=s.queried,
            total=max(s.found, 1),
            line=(f"resp {s.responders} bep51 {s.bep51} ih {s.infohashes} {s.qps:.0f} q/s"),
            clock=clock(s.elapsed),
        )
        if s.peers:
            if self._peers is None:
                self._peers = self._progress.add_task(
                    "peers", total=1, unit="looked up", line="", clock=""
                )
            self._progress.update(
                self._peers,
                completed=s.peers_done,
                total=max(s.peers_planned, 1),
                line=f"get_peers, {s.peers_planned - s.peers_done} to go",
                clock=clock(s.elapsed),
            )

    def close(self) -> None:
        self._progress.stop()


# ----------------------------------------------------------------------------- plot


def _importable(name: str) -> bool:
    try:
        importlib.import_module(name)
    except ImportError:
        return False
    return True


def have_rich() -> bool:
    """rich (the ``crawl`` extra) is installed: ``--progress rich`` works."""
    return _importable("rich")


def have_matplotlib() -> bool:
    """matplotlib (the ``plot`` extra) is installed: ``--plot`` works."""
    return _importable("matplotlib")


def draw_plot(path: str | os.PathLike[str], crawler: Crawler, summary: dict[str, Any]) -> None:
    """Draw the crawl to ``path`` (PNG): nodes over time, client versions, id coverage."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    crawl = crawler.crawl
    fig, axes = plt.subplots(2, 2, figsize=(13, 9))
    ax = axes[0][0]
    rows = [(0.0, 0, 0, 0, 0, 0), *crawler.timeline]
    t = [row[0] for row in rows]
    styles = ((1, "nodes found", "-"), (2, "responding", "--"), (3, "BEP 51", ":"))
    for col, label, style in (*styles, (4, "info-hashes", "-")):
        ax.plot(t, [row[col] for row in rows], style, label=label)
    ax.set_xlabel("seconds")
    ax.set_title("crawl over time")
    rate = ax.twinx()
    qps = [0.0] + [
        (b[5] - a[5]) / (b[0] - a[0]) if b[0] > a[0] else 0.0 for a, b in itertools.pairwise(rows)
    ]
    rate.plot(t, qps, color="grey", lw=0.8, label="queries/s")
    rate.set_ylabel("queries/s")
    lines, labels = ax.get_legend_handles_labels()
    more, more_labels = rate.get_legend_handles_labels()
    ax.legend(lines + more, labels + more_labels, loc="center right")

    ax = axes[0][1]
    versions = Counter(
        format_version(r.version) or "none" for r in crawl.nodes.values() if r.responded
    )
    top = versions.most_common(15)
    ax.barh([name for name, _ in top][::-1], [n for _, n in top][::-1])
    ax.set_title("client versions (responding nodes)")
    ax.set_xlabel("nodes")

    ax = axes[1][0]
    bins = 64
    found = [0] * bins
    queried = [0] * bins
    for rec in crawl.nodes.values():
        if rec.id is None:
            continue
        b = rec.id[0] * bins // 256
        found[b] += 1
        if rec.responded:
            queried[b] += 1
    xs = [i / bins for i in range(bins)]
    ax.bar(xs, queried, width=1 / bins, align="edge", alpha=0.6, label="responding")
    ax.step([*xs, 1.0], [*found, found[-1]], where="post", color="k", lw=1, label="found")
    ax.axhline(sum(found) / bins, color="k", lw=0.8, ls="--", label="uniform")
    ax.set_xlabel("node id / 2^160")
    ax.set_title("id-space coverage")
    ax.legend()

    ax = axes[1][1]
    rtts = [r.rtt * 1000 for r in crawl.nodes.values() if r.rtt is not None]
    if rtts:
        ax.hist(rtts, bins=40)
    ax.set_xlabel("RTT (ms)")
    ax.set_title("response times")
    size = summary.get("network_size")
    note = f"size estimate {size['estimate']} ± {size['stderr']}" if size else "no size estimate"
    fig.suptitle(
        f"{summary['nodes_found']} nodes, {summary['responders']} responding, "
        f"{summary['infohashes']} info-hashes in {summary['duration_s']:.0f} s; {note}"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


# ---------------------------------------------------------------------------- summary


def summarize(crawler: Crawler, estimate: SizeEstimate | None, db: str | None) -> dict[str, Any]:
    crawl = crawler.crawl
    duration = max(crawler.ended - crawler.started, 1e-9)
    clients = Counter(
        format_version(r.version) or "none" for r in crawl.nodes.values() if r.responded
    )
    return {
        "duration_s": round(duration, 2),
        "interrupted": crawler.interrupted,
        "complete": crawl.complete,
        "nodes_found": len(crawl.nodes),
        "nodes_queried": crawl.queried,
        "responders": crawl.responders,
        "bep51_nodes": crawl.bep51_nodes,
        "bep51_share": round(crawl.bep51_nodes / crawl.responders, 4) if crawl.responders else 0.0,
        "infohashes": len(crawl.infohashes),
        "samples_received": crawl.samples_received,
        "with_peers": sum(1 for i in crawl.infohashes.values() if i.peers),
        "peers_looked_up": crawl.peers_done - crawl.peers_failed,
        "peers_unknown": (
            sum(1 for i in crawl.infohashes.values() if i.peers is None) if crawl.want_peers else 0
        ),
        "queries_sent": crawler.queries_sent,
        "queries_per_s": round(crawler.queries_sent / duration, 1),
        "nodes_dropped": crawl.nodes_dropped,
        "infohashes_dropped": crawl.infohashes_dropped,
        "sweeps": crawl.sweeps,
        "nodes_outside_shard": crawl.outside,
        "shard": crawl.shard.as_dict(),
        "clients": dict(clients.most_common(10)),
        "network_size": None if estimate is None else estimate.as_dict(),
        "db": db,
    }


def format_summary(s: dict[str, Any]) -> str:
    lines = [
        f"crawled for {s['duration_s']:.1f} s"
        + (" (interrupted)" if s["interrupted"] else "")
        + ("; every node found was queried" if s["complete"] else ""),
        f"nodes found:  {s['nodes_found']} ({s['nodes_queried']} queried)",
        f"responding:   {s['responders']}",
        f"BEP 51:       {s['bep51_nodes']} ({100 * s['bep51_share']:.1f}% of responding)",
        f"info-hashes:  {s['infohashes']} (from {s['samples_received']} samples)",
        f"queries:      {s['queries_sent']} ({s['queries_per_s']:.1f}/s)",
    ]
    if s["shard"]["shard"] != "1/1":
        part = s["shard"]
        lines.insert(
            1,
            f"shard:        {part['shard']} of the id space ({part['first_id'][:6]}.. to "
            f"{part['last_id'][:6]}..; {s['nodes_outside_shard']} nodes outside left out)",
        )
    if s["peers_looked_up"] or s["peers_unknown"]:
        line = f"peers:        {s['with_peers']} of {s['infohashes']} info-hashes have peers"
        if s["peers_unknown"]:
            line += f"; {s['peers_unknown']} unknown (crawl ended or no answer)"
        lines.append(line)
    size = s["network_size"]
    if size is None:
        lines.append("network size: not enough nodes seen to estimate")
    else:
        lines.append(
            f"network size: ~{size['estimate']} ± {size['stderr']} "
            f"({size['k']}-closest fit, {size['targets']} targets)"
        )
    if s["clients"]:
        lines.append(
            "clients:      " + ", ".join(f"{name} {n}" for name, n in s["clients"].items())
        )
    if s["db"]:
        lines.append(f"database:     {s['db']}")
    return "\n".join(lines)
