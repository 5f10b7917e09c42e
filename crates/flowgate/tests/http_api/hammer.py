#!/usr/bin/env python3
"""An impolite HTTP producer for the tests: several threads send batches back to back and
never honour Retry-After; counts every status and the events accepted."""

import argparse
import json
import threading
import time

import requests


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--topic", required=True)
    ap.add_argument("--threads", type=int, default=8)
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--seconds", type=float, required=True)
    ap.add_argument("--first", type=int, default=1_000_000)
    ap.add_argument("--token")
    ap.add_argument("--json", required=True)
    args = ap.parse_args()

    lock = threading.Lock()
    statuses = {}
    accepted = [0]
    counter = [args.first]
    headers = {"Content-Type": "application/x-ndjson"}
    if args.token:
        headers["Authorization"] = f"Bearer {args.token}"
    stop_at = time.monotonic() + args.seconds

    def worker():
        session = requests.Session()
        while time.monotonic() < stop_at:
            with lock:
                n = counter[0]
                counter[0] += args.batch
            body = "".join(json.dumps({"n": i}) + "\n" for i in range(n, n + args.batch))
            r = session.post(f"{args.url}/v1/topics/{args.topic}/events", data=body, headers=headers)
            with lock:
                statuses[r.status_code] = statuses.get(r.status_code, 0) + 1
                if r.status_code == 200:
                    accepted[0] += args.batch

    threads = [threading.Thread(target=worker) for _ in range(args.threads)]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seconds = time.monotonic() - started
    summary = {"accepted": accepted[0], "seconds": seconds, "statuses": {str(k): v for k, v in sorted(statuses.items())}}
    with open(args.json, "w") as f:
        json.dump(summary, f)
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
