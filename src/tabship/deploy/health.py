"""`tabship rollout check`: is the canary worse than the stable side, by their own /metrics?

Both servers count requests by route and status and time them in one histogram. The check
reads both sides' Prometheus text, keeps the traffic routes (not probes, metrics or static
files), and compares the canary's share of 5xx answers and its p99 latency with the stable
side's. Counters run from each process's start; `window` scrapes twice and compares what
happened in between, so a long-running stable side is judged on the same minutes.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

from tabship.errors import ConfigError, TabshipError

NOT_TRAFFIC = frozenset({"/healthz", "/startupz", "/readyz", "/metrics", "other"})
# With no errors on the stable side, the canary may still have this share before it counts.
ERROR_FLOOR = 0.001
# `rollout check --window`: a check is one step of a rollout, not a watch (run it again).
MAX_WINDOW_SECONDS = 3600.0


@dataclass(frozen=True)
class Sample:
    """What one side's /metrics say: requests, 5xx answers, and the latency histogram."""

    requests: float
    errors: float
    # Cumulative counts per bucket upper bound (seconds), +Inf last.
    buckets: tuple[tuple[float, float], ...]

    def minus(self, earlier: Sample) -> Sample:
        """What happened between `earlier` and this sample."""
        before = dict(earlier.buckets)
        return Sample(
            self.requests - earlier.requests,
            self.errors - earlier.errors,
            tuple((bound, count - before.get(bound, 0.0)) for bound, count in self.buckets),
        )

    @property
    def error_rate(self) -> float:
        """The share of requests answered with a 5xx."""
        return self.errors / self.requests if self.requests else 0.0

    def quantile(self, q: float) -> float:
        """The q-quantile of latency, interpolated in its bucket as Prometheus does."""
        total = self.buckets[-1][1] if self.buckets else 0.0
        if total <= 0:
            return math.nan
        rank = q * total
        lower, below = 0.0, 0.0
        for bound, count in self.buckets:
            if count >= rank:
                if math.isinf(bound):
                    return lower  # past the last finite bucket: its bound is all we know
                share = (rank - below) / (count - below) if count > below else 1.0
                return lower + (bound - lower) * share
            lower, below = bound, count
        return lower


def parse_sample(text: str) -> Sample:
    """The traffic routes' requests, 5xx answers and latency buckets from Prometheus text."""
    from prometheus_client.parser import text_string_to_metric_families

    requests = errors = 0.0
    buckets: dict[float, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            route = sample.labels.get("route", "")
            if route in NOT_TRAFFIC or route.startswith("/static/"):
                continue
            if sample.name == "tabship_requests_total":
                requests += sample.value
                if sample.labels.get("status", "").startswith("5"):
                    errors += sample.value
            elif sample.name == "tabship_request_duration_seconds_bucket":
                bound = float(sample.labels["le"])
                buckets[bound] = buckets.get(bound, 0.0) + sample.value
    return Sample(requests, errors, tuple(sorted(buckets.items())))


def scrape(url: str, key: str | None) -> Sample:
    """One side's /metrics, parsed; a clear error when it cannot be read."""
    import httpx

    # As UTF-8 bytes: the server digests a key's bytes, and httpx encodes a str as ASCII only.
    headers = {b"authorization": f"Bearer {key}".encode()} if key else {}
    target = url.rstrip("/") + "/metrics"
    try:
        answer = httpx.get(target, headers=headers, timeout=10)
    except httpx.HTTPError as exc:
        raise TabshipError(f"{target}: cannot be read ({type(exc).__name__}: {exc})") from None
    if answer.status_code != 200:
        hint = "; pass --api-key-file" if answer.status_code == 401 else ""
        raise TabshipError(f"{target} answered {answer.status_code}{hint}")
    return parse_sample(answer.text)


@dataclass(frozen=True)
class Verdict:
    """Both sides' figures and the reasons the canary is worse (none: it is not)."""

    stable: Sample
    canary: Sample
    reasons: tuple[str, ...]
    enough: bool

    def lines(self) -> list[str]:
        """A small table and the verdict, for the terminal."""
        out = [f"{'side':8} {'requests':>9} {'5xx rate':>9} {'p99 ms':>9}"]
        for name, side in (("stable", self.stable), ("canary", self.canary)):
            p99 = side.quantile(0.99) * 1000
            out.append(
                f"{name:8} {side.requests:9.0f} {side.error_rate:9.2%} "
                f"{'-' if math.isnan(p99) else f'{p99:.2f}':>9}"
            )
        return out


def judge(
    stable: Sample,
    canary: Sample,
    max_error_ratio: float,
    max_p99_ratio: float,
    min_requests: int,
) -> Verdict:
    """Compare the canary with the stable side."""
    reasons = []
    enough = stable.requests >= min_requests and canary.requests >= min_requests
    allowed = max_error_ratio * max(stable.error_rate, ERROR_FLOOR)
    if canary.error_rate > allowed:
        reasons.append(
            f"5xx rate {canary.error_rate:.2%} is over {max_error_ratio:g} x the stable "
            f"{stable.error_rate:.2%} (floor {ERROR_FLOOR:.1%})"
        )
    stable_p99, canary_p99 = stable.quantile(0.99), canary.quantile(0.99)
    if not math.isnan(stable_p99) and canary_p99 > max_p99_ratio * stable_p99:
        reasons.append(
            f"p99 latency {canary_p99 * 1000:.2f} ms is over {max_p99_ratio:g} x the stable "
            f"{stable_p99 * 1000:.2f} ms"
        )
    return Verdict(stable, canary, tuple(reasons), enough)


def read_key(path: Path | None) -> str | None:
    """The first key of a keys file (to read a protected /metrics), never printed."""
    if path is None:
        return None
    try:
        lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"--api-key-file {path} cannot be read: {exc}") from None
    keys = [line for line in lines if line and not line.startswith(("#", "sha256:"))]
    if not keys:
        raise ConfigError(f"--api-key-file {path} holds no plain key")
    return keys[0]


def check_rollout(
    stable_url: str,
    canary_url: str,
    max_error_ratio: float = 1.5,
    max_p99_ratio: float = 1.5,
    min_requests: int = 20,
    window: float = 0.0,
    key: str | None = None,
) -> Verdict:
    """Scrape both sides (twice, `window` seconds apart, when asked) and judge the canary."""
    for flag, ratio in (("--max-error-ratio", max_error_ratio), ("--max-p99-ratio", max_p99_ratio)):
        # nan passed every comparison: a canary at a third of its requests failing was "not
        # worse than stable".
        if not (math.isfinite(ratio) and ratio >= 1):
            raise ConfigError(f"{flag} {ratio:g} must be a finite number, 1 or more")
    if not (math.isfinite(window) and 0 <= window <= MAX_WINDOW_SECONDS):
        raise ConfigError(f"--window {window:g} must be from 0 to {MAX_WINDOW_SECONDS:g} seconds")
    if min_requests < 1:
        raise ConfigError(f"--min-requests {min_requests} must be 1 or more")
    stable, canary = scrape(stable_url, key), scrape(canary_url, key)
    if window > 0:
        time.sleep(window)
        stable = scrape(stable_url, key).minus(stable)
        canary = scrape(canary_url, key).minus(canary)
    return judge(stable, canary, max_error_ratio, max_p99_ratio, min_requests)
