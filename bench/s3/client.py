"""S3 load for bench/s3.sh: boto3 PUT or GET of SIZE-byte objects from N
threads (spread over P processes, so Python's GIL is not the limit) for a fixed
time; prints one JSON line (ops, ops/s, MiB/s, p50/p99 latency, the client's
own CPU time).

  client.py mkbucket --bucket B
  client.py put --bucket B --size BYTES --threads N --procs P --duration S --keys FILE
  client.py get --bucket B --size BYTES --threads N --procs P --duration S --keys FILE

Endpoint and keys come from the environment: S3_ENDPOINT, S3_ACCESS_KEY,
S3_SECRET_KEY. Each thread has its own client and connection. PUT writes
<size>/<thread>/<n> and records how many each thread wrote in FILE; GET reads
those keys in random order and reads every body to the end. Optional request
checksums are off (request_checksum_calculation="when_required"): the gateway
is measured, not the client's CRC32.
"""
import argparse
import json
import multiprocessing
import os
import random
import sys
import threading
import time

import boto3
from botocore.config import Config


def client(threads):
    return boto3.client(
        "s3",
        endpoint_url=os.environ["S3_ENDPOINT"],
        aws_access_key_id=os.environ["S3_ACCESS_KEY"],
        aws_secret_access_key=os.environ["S3_SECRET_KEY"],
        region_name="us-east-1",
        config=Config(
            max_pool_connections=threads,
            retries={"max_attempts": 1},
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
            s3={"addressing_style": "path"},
        ),
    )


def percentile(sorted_values, p):
    if not sorted_values:
        return 0.0
    return sorted_values[min(len(sorted_values) - 1, int(p / 100 * len(sorted_values)))]


def one_process(job):
    """Runs this process's threads until the shared wall-clock deadline."""
    args, first_thread, nthreads, start_at, keys = job
    body = os.urandom(args.size)
    lat = [[] for _ in range(nthreads)]
    errors = [0] * nthreads
    written = [0] * nthreads
    clients = [client(1) for _ in range(nthreads)]
    deadline = start_at + args.duration
    shown = [0]

    def worker(i):
        t = first_thread + i
        s3, rnd = clients[i], random.Random(t)
        time.sleep(max(0.0, start_at - time.time()))
        n = 0
        while time.time() < deadline:
            t0 = time.perf_counter()
            try:
                if args.op == "put":
                    s3.put_object(Bucket=args.bucket, Key=f"{args.size}/{t}/{n}", Body=body)
                    n += 1
                else:
                    r = s3.get_object(Bucket=args.bucket, Key=rnd.choice(keys))
                    if len(r["Body"].read()) != args.size:
                        raise IOError("short read")
            except Exception as e:  # counted, and the first few shown
                errors[i] += 1
                shown[0] += 1
                if shown[0] <= 3:
                    print(f"client.py: {args.op}: {e}", file=sys.stderr)
                continue
            lat[i].append((time.perf_counter() - t0) * 1000)
        written[i] = n

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(nthreads)]
    for th in threads:
        th.start()
    cpu0 = os.times()
    for th in threads:
        th.join()
    cpu1 = os.times()
    end = time.time()
    cpu = (cpu1.user - cpu0.user) + (cpu1.system - cpu0.system)
    return [x for l in lat for x in l], sum(errors), written, cpu, end


def run(args):
    keys = []
    if args.op == "get":
        counts = json.load(open(args.keys))
        keys = [f"{args.size}/{t}/{n}" for t, c in enumerate(counts) for n in range(c)]
        if not keys:
            sys.exit("client.py: no keys to read (did the PUT phase write any?)")
    procs = max(1, min(args.procs, args.threads))
    per = [args.threads // procs + (1 if p < args.threads % procs else 0) for p in range(procs)]
    start_at = time.time() + 1.0  # every process starts its clock together
    jobs = [(args, sum(per[:p]), per[p], start_at, keys) for p in range(procs)]
    with multiprocessing.get_context("fork").Pool(procs) as pool:
        results = pool.map(one_process, jobs)
    elapsed = max(r[4] for r in results) - start_at
    if args.op == "put":
        json.dump([n for r in results for n in r[2]], open(args.keys, "w"))
    all_lat = sorted(x for r in results for x in r[0])
    errors = sum(r[1] for r in results)
    ops = len(all_lat)
    if ops == 0:
        sys.exit(f"client.py: no {args.op} succeeded ({errors} errors)")
    print(json.dumps({
        "op": args.op, "size": args.size, "threads": args.threads, "procs": procs, "ops": ops,
        "errors": errors, "seconds": round(elapsed, 2),
        "ops_s": round(ops / elapsed, 1), "mib_s": round(ops * args.size / elapsed / 2**20, 1),
        "p50_ms": round(percentile(all_lat, 50), 2), "p99_ms": round(percentile(all_lat, 99), 2),
        "client_cpu_s": round(sum(r[3] for r in results), 1),
    }))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("op", choices=["mkbucket", "put", "get"])
    p.add_argument("--bucket", required=True)
    p.add_argument("--size", type=int, default=4096)
    p.add_argument("--threads", type=int, default=16)
    p.add_argument("--procs", type=int, default=2)
    p.add_argument("--duration", type=float, default=10)
    p.add_argument("--keys", default="keys.json")
    args = p.parse_args()
    if args.op == "mkbucket":
        client(1).create_bucket(Bucket=args.bucket)
        return
    run(args)


if __name__ == "__main__":
    main()
