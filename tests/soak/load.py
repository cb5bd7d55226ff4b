"""Steady load for the soak test, run as its own process: single records and batches on loopback."""

from __future__ import annotations

import json
import sys
import threading
import time

import httpx

RECORD = {
    "age": 40,
    "sex": "female",
    "bmi": 27.5,
    "children": 2,
    "smoker": "no",
    "region": "southeast",
}


def main(url: str, seconds: float, threads: int, batch_rows: int = 0) -> None:
    counts = {"ok": 0, "errors": 0}
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def worker(index: int) -> None:
        with httpx.Client(base_url=url, timeout=10) as client:
            batch = {"instances": [RECORD] * (batch_rows or 1 + index * 20)}
            while time.monotonic() < deadline:
                try:
                    ok = client.post("/predict_api", json=RECORD).status_code == 200
                    ok = ok and client.post("/v1/predict", json=batch).status_code == 200
                except httpx.HTTPError:
                    ok = False
                with lock:
                    counts["ok" if ok else "errors"] += 1

    pool = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    print(json.dumps(counts))


if __name__ == "__main__":
    main(
        sys.argv[1],
        float(sys.argv[2]),
        int(sys.argv[3]),
        int(sys.argv[4]) if len(sys.argv) > 4 else 0,
    )
