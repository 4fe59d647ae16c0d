"""Starts the instant DataSync task for uploads the data account forwards (EventBridge "Object Created" events).

Input: one EventBridge event, a list of them, or SQS-style {"Records": [{"body": <event JSON>}]} (a replayed batch).
Only events of EXPECTED_ACCOUNT / EXPECTED_BUCKET under PREFIX count. Any error raises, so Lambda retries the event
and finally dead-letters it: an upload is never silently dropped.
"""

import json
import os
from urllib.parse import unquote_plus

import boto3
from botocore.exceptions import ClientError

MAX_FILTER = 102_400  # characters in one DataSync filter string (DataSync quotas)


def log(message, **fields):
    print(json.dumps({"message": message, **fields}, default=str))


def events_of(event):
    if isinstance(event, list):
        return event
    if isinstance(event, dict) and "Records" in event:
        bodies = [r.get("body", r) for r in event["Records"]]
        return [json.loads(b) if isinstance(b, str) else b for b in bodies]
    return [event]


def paths(event, account, bucket, prefix):
    """Filter paths (relative to the location's subdirectory) for one event; empty when it is not ours."""
    detail = event.get("detail") or {}
    key = (detail.get("object") or {}).get("key") or ""
    name = (detail.get("bucket") or {}).get("name")
    if event.get("account") != account or name != bucket:
        log("ignored: wrong account or bucket", account=event.get("account"), bucket=name)
        return set()
    # EventBridge sends plain keys, S3 notifications URL-encode them; both readings go in, since a pattern that
    # matches no file costs nothing while a wrongly decoded one would skip the upload.
    found = {k[len(prefix) :] for k in {key, unquote_plus(key)} if k.startswith(prefix) and len(k) > len(prefix)}
    if not found:
        log("ignored: key outside prefix", key=key, prefix=prefix)
    return {"/" + p for p in found}


def handler(event, context):
    account, bucket = os.environ["EXPECTED_ACCOUNT"], os.environ["EXPECTED_BUCKET"]
    task, prefix = os.environ["INSTANT_TASK_ARN"], os.environ["PREFIX"]
    wanted = set()
    for item in events_of(event):
        wanted |= paths(item, account, bucket, prefix)
    if not wanted:
        return {"started": None}
    value = "|".join(sorted(wanted))
    request = {"TaskArn": task}
    # "|" separates patterns and "*" is a wildcard: such keys, or too many keys, mean syncing all of instant/.
    if len(value) > MAX_FILTER or any("|" in p or "*" in p for p in wanted):
        log("full instant sync: include filter not usable", files=len(wanted), filter_length=len(value))
    else:
        request["Includes"] = [{"FilterType": "SIMPLE_PATTERN", "Value": value}]
    try:
        started = boto3.client("datasync").start_task_execution(**request)
    except ClientError as error:
        code, text = error.response["Error"].get("Code"), error.response["Error"].get("Message", "")
        busy = code == "InvalidRequestException" and any(w in text.lower() for w in ("already", "running", "queue"))
        log("retry: execution already running" if busy else "start failed", code=code, error=text)
        raise
    arn = started["TaskExecutionArn"]
    log("started", task_execution=arn, files=len(wanted), filtered="Includes" in request)
    return {"started": arn, "files": len(wanted)}
