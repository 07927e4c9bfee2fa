"""Check CloudWatch Embedded Metric Format documents (one JSON object per line on stdin) against AWS's
specification: its published JSON schema (emf-schema.json, next to this file) and the rules the schema cannot
express (target members on the root node, value counts and types, limits). Exit 0 when every document passes;
otherwise print each problem and exit 1.

Sources: https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/CloudWatch_Embedded_Metric_Format_Specification.html
and the limits of AWS's own EMF libraries (awslabs/aws-embedded-metrics-python, constants.py and validator.py).
"""

import json
import math
import pathlib
import re
import sys
import time

import jsonschema

SCHEMA = json.loads((pathlib.Path(__file__).parent / "emf-schema.json").read_text())

MAX_EVENT_BYTES = 1024 * 1024  # the spec: a CloudWatch Logs event, at most 1 MB
MAX_METRICS_PER_DIRECTIVE = 100
MAX_VALUES_PER_METRIC = 100
MAX_DIMENSION_VALUE_LEN = 1024
MAX_NAMESPACE_LEN = 256  # the EMF libraries (CloudWatch's API says 255; we keep to both)
NAMESPACE = re.compile(r"^[a-zA-Z0-9._#:/-]{1,255}$")
PAST_MS = 14 * 24 * 3600 * 1000  # CloudWatch takes metrics up to 14 days old
FUTURE_MS = 2 * 3600 * 1000  # and up to 2 hours ahead


def problems(line: str, now_ms: int) -> list[str]:
    found = []
    if len(line.encode()) > MAX_EVENT_BYTES:
        found.append(f"{len(line.encode())} bytes, over the 1 MB event limit")
    try:
        doc = json.loads(line)
    except json.JSONDecodeError as e:
        return [f"not JSON: {e}"]
    if not isinstance(doc, dict):
        return ["not a JSON object"]
    validator = jsonschema.Draft7Validator(SCHEMA)
    found += [f"schema: {e.message} at {list(e.absolute_path)}" for e in validator.iter_errors(doc)]
    if found:
        return found
    aws = doc["_aws"]
    ts = aws["Timestamp"]
    if not now_ms - PAST_MS <= ts <= now_ms + FUTURE_MS:
        found.append(f"Timestamp {ts} is not within 14 days before and 2 hours after now ({now_ms})")
    for directive in aws["CloudWatchMetrics"]:
        ns = directive["Namespace"]
        if len(ns) > MAX_NAMESPACE_LEN or not NAMESPACE.match(ns):
            found.append(f"Namespace {ns!r} is not 1-255 of [a-zA-Z0-9._#:/-]")
        metrics = directive["Metrics"]
        if len(metrics) > MAX_METRICS_PER_DIRECTIVE:
            found.append(f"{len(metrics)} metrics in one directive (at most {MAX_METRICS_PER_DIRECTIVE})")
        for dimension_set in directive["Dimensions"]:
            for name in dimension_set:
                value = doc.get(name)
                if not isinstance(value, str) or not value.strip():
                    found.append(f"dimension {name!r} has no string value on the root node")
                elif len(value) > MAX_DIMENSION_VALUE_LEN or not value.isascii():
                    found.append(f"dimension {name!r} value is not ASCII of at most {MAX_DIMENSION_VALUE_LEN}")
        for metric in metrics:
            name = metric["Name"]
            resolution = metric.get("StorageResolution", 60)
            if resolution not in (1, 60):
                found.append(f"metric {name!r}: StorageResolution {resolution} is not 1 or 60")
            if name not in doc:
                found.append(f"metric {name!r} has no value on the root node")
                continue
            value = doc[name]
            values = value if isinstance(value, list) else [value]
            if isinstance(value, list) and not 0 < len(value) <= MAX_VALUES_PER_METRIC:
                found.append(f"metric {name!r}: {len(value)} values (1 to {MAX_VALUES_PER_METRIC})")
            for v in values:
                if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                    found.append(f"metric {name!r}: {v!r} is not a finite number")
    return found


def main() -> int:
    now_ms = int(time.time() * 1000)
    failed = 0
    checked = 0
    for number, line in enumerate(sys.stdin, 1):
        line = line.strip()
        if not line:
            continue
        checked += 1
        for problem in problems(line, now_ms):
            failed += 1
            print(f"line {number}: {problem}\n  {line[:300]}")
    if checked == 0:
        print("no EMF document to check")
        return 1
    print(f"{checked} EMF documents checked, {failed} problems")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
