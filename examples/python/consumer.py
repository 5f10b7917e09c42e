#!/usr/bin/env python3
"""A flowgate consumer over HTTP: fetches a group's deliveries, handles each, acks after.

Each fetch waits up to --wait for a first event. An event is acknowledged only after it was
handled (here: written to --out, one payload per line, flushed), so a consumer killed before
its ack gets the event again, attempt + 1, after the group's ack deadline.

    python3 consumer.py --url http://127.0.0.1:8080 --topic orders --group db --out events.ndjson
"""

import argparse
import json
import time

import requests


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", required=True)
    ap.add_argument("--topic", required=True)
    ap.add_argument("--group", required=True)
    ap.add_argument("--max", type=int, default=500, help="events per fetch")
    ap.add_argument("--wait", default="1s", help="how long a fetch waits for a first event")
    ap.add_argument("--idle-exit", type=float, default=3.0, help="stop after this long with nothing fetched")
    ap.add_argument("--token")
    ap.add_argument("--out", required=True, help="append each payload here, one per line")
    args = ap.parse_args()

    base = f"{args.url}/v1/topics/{args.topic}/groups/{args.group}"
    headers = {"Authorization": f"Bearer {args.token}"} if args.token else {}
    session = requests.Session()
    received = 0
    idle_since = time.monotonic()
    with open(args.out, "a") as out:
        while time.monotonic() - idle_since < args.idle_exit:
            r = session.post(f"{base}/fetch", params={"max": args.max, "wait": args.wait}, headers=headers)
            if r.status_code != 200:
                time.sleep(float(r.headers.get("Retry-After", "1")))
                continue
            events = r.json()["events"]
            if not events:
                continue
            idle_since = time.monotonic()
            for e in events:
                out.write(json.dumps(e["payload"]) + "\n")
            out.flush()
            r = session.post(f"{base}/ack", json={"tags": [e["tag"] for e in events]}, headers=headers)
            r.raise_for_status()
            received += len(events)
    print(json.dumps({"received": received}))


if __name__ == "__main__":
    main()
