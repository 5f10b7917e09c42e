#!/usr/bin/env python3
"""A flowgate producer over HTTP that honours Retry-After.

Sends numbered JSON events ({"n": 1}, {"n": 2}, ...) in NDJSON batches. A 200 means the broker
holds the whole batch; a 503 or 429 means nothing of it was kept, so the same batch goes again
after the Retry-After the gateway measured, with the same Idempotency-Key (a retry of a batch
that was in fact stored is answered from the first attempt, not stored twice).

    python3 producer.py --url http://127.0.0.1:8080 --topic orders --count 10000
"""

import argparse
import json
import sys
import time
import uuid

import requests


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", required=True, help="the HTTP API, e.g. http://127.0.0.1:8080")
    ap.add_argument("--topic", required=True)
    ap.add_argument("--count", type=int, default=10_000, help="events to send")
    ap.add_argument("--seconds", type=float, help="stop after this long instead of at --count")
    ap.add_argument("--batch", type=int, default=100, help="events per request")
    ap.add_argument("--first", type=int, default=1, help="the number of the first event")
    ap.add_argument("--token", help="a bearer token for a broker that requires one")
    ap.add_argument("--json", help="write a summary here")
    args = ap.parse_args()

    endpoint = f"{args.url}/v1/topics/{args.topic}/events"
    headers = {"Content-Type": "application/x-ndjson"}
    if args.token:
        headers["Authorization"] = f"Bearer {args.token}"
    statuses = {}
    waited = 0.0
    sent = 0
    n = args.first
    last = args.first + args.count - 1
    session = requests.Session()
    started = time.monotonic()
    while n <= last:
        if args.seconds is not None and time.monotonic() - started >= args.seconds:
            break
        size = min(args.batch, last - n + 1)
        body = "".join(json.dumps({"n": i}) + "\n" for i in range(n, n + size))
        key = str(uuid.uuid4())
        while True:
            r = session.post(endpoint, data=body, headers={**headers, "Idempotency-Key": key})
            statuses[r.status_code] = statuses.get(r.status_code, 0) + 1
            if r.status_code == 200:
                break
            if r.status_code in (429, 503):
                pause = float(r.headers.get("Retry-After", "1"))
                waited += pause
                time.sleep(pause)
                continue
            sys.exit(f"{r.status_code}: {r.text}")
        sent += size
        n += size
    seconds = time.monotonic() - started
    summary = {
        "sent": sent,
        "seconds": seconds,
        "rate": sent / seconds if seconds > 0 else 0.0,
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "slept_for_retry_after_s": waited,
    }
    print(json.dumps(summary))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(summary, f)


if __name__ == "__main__":
    main()
