"""Helpers of scripts/s3-tests, run with its virtualenv's python (boto3 < 1.28).

  conf CONF_JSON                 print the suite's S3TEST_CONF for CONF_JSON
  tenanted CONF_JSON             exit 0 if main or alt is a user of an RGW tenant
  excludes FILE TENANTED         print the names to leave out (one a line)
  sweep CONF_JSON                delete the users' leftover test buckets; print how many remain
  summary OUT MS PARTIAL LOST ATTRS EXCLUDE_FILE TENANTED
                                 print summary.json from OUT's xunit files (or, for a
                                 run cut short, from nose.log)
"""
import json
import re
import sys
import xml.etree.ElementTree as ET
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

ROLES = ("main", "alt", "tenant")
DEFAULT_PREFIX = "s3t-{random}-"


def die(msg):
    sys.exit(f"s3-tests: {msg}")


def load(path):
    try:
        c = json.load(open(path))
    except (OSError, ValueError) as e:
        die(f"{path}: {e}")
    u = urlsplit(c.get("endpoint") or "")
    if u.scheme not in ("http", "https") or not u.hostname:
        die(f"{path}: endpoint must be http(s)://host:port")
    users = c.get("users") or {}
    for role in ROLES:
        x = users.get(role)
        if not isinstance(x, dict):
            die(f"{path}: users.{role} missing")
        for k in ("access_key", "secret_key", "user_id", "display_name"):
            if not isinstance(x.get(k), str) or not x[k]:
                die(f"{path}: users.{role}.{k} missing or empty")
        for k, v in x.items():
            if isinstance(v, str) and "\n" in v:
                die(f"{path}: users.{role}.{k} has a newline")
        tenant = x.get("tenant") or ""
        # the id RGW reports as owner: "<tenant>$<uid>"
        if tenant and "$" not in x["user_id"]:
            x["user_id"] = f"{tenant}${x['user_id']}"
        x["tenant"] = tenant or (x["user_id"].split("$", 1)[0] if "$" in x["user_id"] else "")
    return c, u


def conf(path):
    c, u = load(path)
    port = u.port or (443 if u.scheme == "https" else 80)
    print("[DEFAULT]")
    print(f"host = {u.hostname}\nport = {port}\nis_secure = {u.scheme == 'https'}\nssl_verify = False\n")
    print(f"[fixtures]\nbucket prefix = {c.get('bucket_prefix') or DEFAULT_PREFIX}\n")
    for role in ROLES:
        x = c["users"][role]
        print(f"[s3 {role}]")
        print(f"user_id = {x['user_id']}\ndisplay_name = {x['display_name']}")
        print(f"email = {x.get('email') or ''}")
        print(f"access_key = {x['access_key']}\nsecret_key = {x['secret_key']}")
        if role == "main":
            print("api_name = default")
        print()


def tenanted(path):
    c, _ = load(path)
    sys.exit(0 if c["users"]["main"]["tenant"] or c["users"]["alt"]["tenant"] else 1)


def exclude_groups(path):
    """[(applies_to, reason, [names])] from the exclusion file."""
    groups, applies, reason, names, in_comment = [], None, [], [], False
    def close():
        if names:
            groups.append((applies, " ".join(reason), list(names)))
        names.clear()
    for raw in open(path):
        line = raw.strip()
        if not line:
            continue
        if line in ("@always", "@tenanted"):
            close()
            applies, reason, in_comment = line[1:], [], False
        elif line.startswith("#"):
            if applies is None:
                continue  # the file's own header
            if not in_comment:
                close()
                reason, in_comment = [], True
            reason.append(line.lstrip("# "))
        else:
            if applies is None:
                die(f"{path}: '{line}' comes before any @always/@tenanted line")
            if not re.fullmatch(r"test_\w+", line):
                die(f"{path}: '{line}' is not a test function's name")
            in_comment = False
            names.append(line)
    close()
    return groups


def excludes(path, is_tenanted):
    for applies, _, names in exclude_groups(path):
        if applies == "always" or is_tenanted == "true":
            print("\n".join(names))


def sweep(path):
    """Deletes every bucket of the three users whose name starts with the fixed
    part of the bucket prefix: the suite's own teardown stops at the first bucket
    it may not list (a deny policy or an ACL a failed test left), and a run that
    hit its deadline never tears down."""
    import boto3
    from botocore.config import Config

    c, u = load(path)
    fixed = (c.get("bucket_prefix") or DEFAULT_PREFIX).split("{", 1)[0]
    if len(fixed) < 3:
        print(0)
        return
    left = 0
    for role in ROLES:
        x = c["users"][role]
        s3 = boto3.client("s3", endpoint_url=c["endpoint"], region_name="us-east-1",
                          aws_access_key_id=x["access_key"], aws_secret_access_key=x["secret_key"],
                          config=Config(retries={"max_attempts": 2}, connect_timeout=5, read_timeout=30,
                                        max_pool_connections=8))
        try:
            buckets = [b["Name"] for b in s3.list_buckets()["Buckets"] if b["Name"].startswith(fixed)]
        except Exception as e:
            print(f"s3-tests: sweep: listing {role}'s buckets: {e}", file=sys.stderr)
            continue

        def remove(b):
            for call in (lambda: s3.delete_bucket_policy(Bucket=b),
                         lambda: s3.put_bucket_acl(Bucket=b, ACL="private")):
                try:
                    call()
                except Exception:
                    pass
            try:
                for page in s3.get_paginator("list_object_versions").paginate(Bucket=b):
                    objs = [{"Key": o["Key"], "VersionId": o["VersionId"]}
                            for o in page.get("Versions", []) + page.get("DeleteMarkers", [])]
                    if objs:
                        s3.delete_objects(Bucket=b, Delete={"Objects": objs, "Quiet": True},
                                          BypassGovernanceRetention=True)
                for page in s3.get_paginator("list_multipart_uploads").paginate(Bucket=b):
                    for up in page.get("Uploads", []):
                        s3.abort_multipart_upload(Bucket=b, Key=up["Key"], UploadId=up["UploadId"])
                s3.delete_bucket(Bucket=b)
                return 0
            except Exception:
                return 1

        with ThreadPoolExecutor(8) as pool:
            left += sum(pool.map(remove, buckets))
    print(left)


def summary(out, ms, partial, lost, attrs, exclude_file, is_tenanted):
    partial, lost = partial == "true", lost == "true"

    def collected(name):
        return int(ET.parse(f"{out}/{name}").getroot().get("tests", 0))

    total, eligible = collected("collect-all.xml"), collected("collect-run.xml")
    s = {"ran": 0, "passed": 0, "failed": 0, "errors": 0, "skipped": 0,
         "excluded": total - eligible, "collected": total, "duration_s": round(int(ms) / 1000, 1),
         "tests_s": 0.0, "timed_out": partial and not lost, "endpoint_lost": lost,
         "tenanted": is_tenanted == "true",
         "failures": [], "errors_list": [], "fixture_errors": [], "modules": {}}

    def module_of(classname):  # a test function's classname is its module
        parts = classname.split(".")
        return ".".join(parts[:-1] if parts[-1][:1].isupper() else parts)

    def record(kind, name, message, module=None):
        key = {"ok": "passed", "failure": "failed", "error": "errors", "skipped": "skipped"}[kind]
        s["ran"] += 1
        s[key] += 1
        if module is not None:
            s["modules"][module][key] += 1
        if kind == "failure":
            s["failures"].append({"name": name, "message": message})
        elif kind == "error":
            s["errors_list"].append({"name": name, "message": message})

    if not partial:
        for tc in ET.parse(f"{out}/nosetests.xml").getroot().iter("testcase"):
            cls, name = tc.get("classname") or "", tc.get("name") or ""
            kind = next((ch.tag for ch in tc if ch.tag in ("failure", "error", "skipped")), "ok")
            msg = ""
            if kind != "ok":
                ch = tc.find(kind)
                lines = (ch.get("message") or "").strip().splitlines()
                msg = lines[0][:300] if lines else ch.get("type", "")
            if cls.startswith("<nose.suite"):  # package setup/teardown, not a test
                s["fixture_errors"].append({"name": f"{cls}{name}", "message": msg})
                continue
            mod = module_of(cls)
            m = s["modules"].setdefault(mod, {"ran": 0, "passed": 0, "failed": 0, "errors": 0,
                                              "skipped": 0, "duration_s": 0.0})
            m["ran"] += 1
            m["duration_s"] = round(m["duration_s"] + float(tc.get("time") or 0), 2)
            s["tests_s"] = round(s["tests_s"] + float(tc.get("time") or 0), 2)
            record(kind, f"{cls}.{name}", msg, mod)
    else:
        # nose -v prints "module.test ... ok|FAIL|ERROR|SKIP" for each test it finished.
        for line in open(f"{out}/nose.log", errors="replace"):
            r = re.match(r"^(\S+) \.\.\. (ok|FAIL|ERROR|SKIP)", line)
            if r:
                kind = {"ok": "ok", "FAIL": "failure", "ERROR": "error", "SKIP": "skipped"}[r.group(2)]
                record(kind, r.group(1), "")
    s["exclusions"] = [{"attribute": a.split("|", 1)[0], "reason": a.split("|", 1)[1]}
                       for a in attrs.splitlines() if a]
    for applies, reason, names in exclude_group_list(exclude_file, is_tenanted):
        s["exclusions"].append({"applies": applies, "reason": reason, "tests": names})
    json.dump(s, sys.stdout, indent=1)
    print()


def exclude_group_list(path, is_tenanted):
    return [g for g in exclude_groups(path) if g[0] == "always" or is_tenanted == "true"]


if __name__ == "__main__":
    cmds = {"conf": conf, "tenanted": tenanted, "excludes": excludes, "sweep": sweep,
            "summary": summary}
    if len(sys.argv) < 2 or sys.argv[1] not in cmds:
        die(__doc__)
    cmds[sys.argv[1]](*sys.argv[2:])
