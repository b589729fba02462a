#!/usr/bin/env python3
"""A standard S3 client (boto3) for the object-storage end-to-end test.

    client.py ENDPOINT ACCESS_KEY SECRET_KEY roundtrip BUCKET
        put/get/list/delete, a 3-part multipart upload of 15 MiB read back whole,
        a presigned GET fetched without credentials; leaves `keep.txt` behind
    client.py ENDPOINT ACCESS_KEY SECRET_KEY put BUCKET KEY SIZE
    client.py ENDPOINT ACCESS_KEY SECRET_KEY get BUCKET KEY
    client.py ENDPOINT ACCESS_KEY SECRET_KEY list BUCKET
    client.py ENDPOINT ACCESS_KEY SECRET_KEY mkbucket|rmbucket BUCKET
    client.py ENDPOINT ACCESS_KEY SECRET_KEY presign BUCKET KEY   (signs only: no request)

Prints one JSON object: {"ok": true, ...} or {"ok": false, "status": 403, "code": "..."}.
Path-style URLs, signature v4, region us-east-1 (what the gateway accepts).
"""
import hashlib
import json
import sys
import urllib.error
import urllib.request

import boto3
import botocore.handlers
from botocore.client import Config
from botocore.exceptions import ClientError


def client(endpoint, ak, sk):
    # No client-side bucket name check: another tenant's bucket is `tenant:bucket`.
    cfg = Config(s3={"addressing_style": "path"}, signature_version="s3v4",
                 retries={"max_attempts": 1}, parameter_validation=False)
    s3 = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=ak,
                      aws_secret_access_key=sk, region_name="us-east-1", config=cfg)
    s3.meta.events.unregister("before-parameter-build.s3", botocore.handlers.validate_bucket_name)
    return s3


def roundtrip(s3, bucket):
    body = b"hello from yunhan\n"
    s3.put_object(Bucket=bucket, Key="hello.txt", Body=body)
    got = s3.get_object(Bucket=bucket, Key="hello.txt")["Body"].read()
    assert got == body, got
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]
    assert "hello.txt" in keys, keys
    s3.delete_object(Bucket=bucket, Key="hello.txt")
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]
    assert "hello.txt" not in keys, keys

    part = 5 << 20
    parts_data = [bytes([i]) * part for i in range(3)]
    up = s3.create_multipart_upload(Bucket=bucket, Key="big.bin")
    parts = []
    for n, data in enumerate(parts_data, start=1):
        r = s3.upload_part(Bucket=bucket, Key="big.bin", UploadId=up["UploadId"],
                           PartNumber=n, Body=data)
        parts.append({"ETag": r["ETag"], "PartNumber": n})
    s3.complete_multipart_upload(Bucket=bucket, Key="big.bin", UploadId=up["UploadId"],
                                 MultipartUpload={"Parts": parts})
    whole = s3.get_object(Bucket=bucket, Key="big.bin")["Body"].read()
    want = hashlib.sha256(b"".join(parts_data)).hexdigest()
    assert len(whole) == 15 << 20 and hashlib.sha256(whole).hexdigest() == want

    s3.put_object(Bucket=bucket, Key="keep.txt", Body=b"kept\n")
    url = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "keep.txt"},
                                    ExpiresIn=300)
    with urllib.request.urlopen(url, timeout=10) as r:
        assert r.read() == b"kept\n"
    return {"ok": True, "multipart_bytes": len(whole), "presigned": url.split("?")[0]}


def main():
    endpoint, ak, sk, op = sys.argv[1:5]
    args = sys.argv[5:]
    s3 = client(endpoint, ak, sk)
    try:
        if op == "roundtrip":
            out = roundtrip(s3, args[0])
        elif op == "put":
            s3.put_object(Bucket=args[0], Key=args[1], Body=b"x" * int(args[2]))
            out = {"ok": True}
        elif op == "get":
            body = s3.get_object(Bucket=args[0], Key=args[1])["Body"].read()
            out = {"ok": True, "bytes": len(body)}
        elif op == "mkbucket":
            s3.create_bucket(Bucket=args[0])
            out = {"ok": True}
        elif op == "rmbucket":
            s3.delete_bucket(Bucket=args[0])
            out = {"ok": True}
        elif op == "presign":
            url = s3.generate_presigned_url("get_object", ExpiresIn=600,
                                            Params={"Bucket": args[0], "Key": args[1]})
            out = {"ok": True, "url": url}
        elif op == "list":
            got = s3.list_objects_v2(Bucket=args[0]).get("Contents", [])
            out = {"ok": True, "keys": [o["Key"] for o in got]}
        else:
            raise SystemExit(f"unknown operation {op}")
    except ClientError as e:
        out = {"ok": False, "status": e.response["ResponseMetadata"]["HTTPStatusCode"],
               "code": e.response["Error"].get("Code", "")}
    except urllib.error.HTTPError as e:
        out = {"ok": False, "status": e.code, "code": "presigned"}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
