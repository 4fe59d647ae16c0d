"""lambda_src/datasync_trigger: starts the instant task with include filters for the new keys, against moto's
DataSync, and treats an execution that cannot start as a retry (raise), never as a loss."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from botocore.stub import Stubber
from moto import mock_aws

from tests.lambdas import load_handler

ROOT = Path(__file__).resolve().parent.parent
HANDLER = ROOT / "lambda_src" / "datasync_trigger" / "handler.py"

DATA_ACCOUNT = "444444444444"
BUCKET = "rstudio-dev-uploads-444444444444-eu-west-1"


handler_module = load_handler(HANDLER, "datasync_trigger_handler")


def s3_event(key: str, account: str = DATA_ACCOUNT, bucket: str = BUCKET) -> dict[str, Any]:
    """An S3 "Object Created" event as the data account's rule forwards it (account stays the data account)."""
    return {
        "version": "0", "id": "17793124-05d4-b198-2fde-7ededc63b103", "detail-type": "Object Created",
        "source": "aws.s3", "account": account, "time": "2024-11-12T00:00:00Z", "region": "eu-west-1",
        "resources": [f"arn:aws:s3:::{bucket}"],
        "detail": {"version": "0", "bucket": {"name": bucket},
                   "object": {"key": key, "size": 5, "etag": "b1946ac92492d2347c6235b4d2611184"},
                   "request-id": "N4N7GDK58NMKJ12R", "requester": DATA_ACCOUNT, "reason": "PutObject"},
    }  # fmt: skip


@pytest.fixture
def datasync(monkeypatch):
    """moto DataSync with an instant task; yields (task ARN, list of StartTaskExecution requests as sent)."""
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    with mock_aws():
        client = boto3.client("datasync")
        source = client.create_location_s3(S3BucketArn=f"arn:aws:s3:::{BUCKET}", Subdirectory="/instant/",
                                           S3Config={"BucketAccessRoleArn": "arn:aws:iam::555555555555:role/r"})
        # moto has no EFS locations; any second location stands in for the destination.
        target = client.create_location_s3(S3BucketArn="arn:aws:s3:::stand-in", Subdirectory="/",
                                           S3Config={"BucketAccessRoleArn": "arn:aws:iam::555555555555:role/r"})
        task = client.create_task(SourceLocationArn=source["LocationArn"],
                                  DestinationLocationArn=target["LocationArn"], Name="instant")["TaskArn"]  # fmt: skip
        sent: list[dict[str, Any]] = []
        real_client = boto3.client

        def recording_client(service: str, **kwargs: Any):
            made = real_client(service, **kwargs)
            made.meta.events.register("provide-client-params.datasync.StartTaskExecution",
                                      lambda params, **_: sent.append(dict(params)))  # fmt: skip
            return made

        monkeypatch.setattr(handler_module.boto3, "client", recording_client)
        monkeypatch.setenv("INSTANT_TASK_ARN", task)
        monkeypatch.setenv("EXPECTED_ACCOUNT", DATA_ACCOUNT)
        monkeypatch.setenv("EXPECTED_BUCKET", BUCKET)
        monkeypatch.setenv("PREFIX", "instant/")
        yield task, sent


def includes(request: dict[str, Any]) -> str:
    [rule] = request["Includes"]
    assert rule["FilterType"] == "SIMPLE_PATTERN"
    return rule["Value"]


def logs(capsys) -> list[dict[str, Any]]:
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def test_one_event_starts_the_instant_task_for_that_file(datasync, capsys):
    task, sent = datasync
    result = handler_module.handler(s3_event("instant/report.csv"), None)
    [request] = sent
    assert request["TaskArn"] == task
    assert includes(request) == "/report.csv"  # relative to the location's /instant/ subdirectory
    execution = boto3.client("datasync").describe_task_execution(TaskExecutionArn=result["started"])
    assert execution["TaskExecutionArn"].startswith(task)
    assert logs(capsys)[-1]["message"] == "started"


def test_many_records_start_one_execution_with_every_key(datasync):
    _, sent = datasync
    keys = ["instant/b.csv", "instant/a.csv", "instant/b.csv", "instant/sub/c.parquet"]
    batch = {"Records": [{"messageId": str(i), "body": json.dumps(s3_event(k))} for i, k in enumerate(keys)]}
    result = handler_module.handler(batch, None)
    [request] = sent
    assert includes(request) == "/a.csv|/b.csv|/sub/c.parquet"
    assert result["files"] == 3


def test_a_list_of_events_is_a_batch_too(datasync):
    _, sent = datasync
    handler_module.handler([s3_event("instant/x/1.csv"), s3_event("instant/x/2.csv")], None)
    assert includes(sent[0]) == "/x/1.csv|/x/2.csv"


def test_nested_keys_keep_their_folders(datasync):
    _, sent = datasync
    handler_module.handler(s3_event("instant/team a/2024/11/data.csv"), None)
    assert includes(sent[0]) == "/team a/2024/11/data.csv"


def test_url_encoded_keys_are_decoded_and_the_literal_key_is_kept(datasync):
    _, sent = datasync
    handler_module.handler(s3_event("instant/my+report%282%29.csv"), None)
    # S3 notifications encode "my report(2).csv" like this; a key that really contains "+" stays matched too.
    assert includes(sent[0]) == "/my report(2).csv|/my+report%282%29.csv"


def test_plain_keys_give_a_single_pattern(datasync):
    _, sent = datasync
    handler_module.handler(s3_event("instant/plain-name_1.csv"), None)
    assert includes(sent[0]) == "/plain-name_1.csv"


@pytest.mark.parametrize(
    "event",
    [
        s3_event("hourly/report.csv"),
        s3_event("instant/"),
        s3_event("instant/report.csv", account="999999999999"),
        s3_event("instant/report.csv", bucket="someone-elses-bucket"),
        {"detail-type": "Scheduled Event", "source": "aws.events", "account": DATA_ACCOUNT, "detail": {}},
    ],
    ids=["other-prefix", "prefix-only", "other-account", "other-bucket", "not-s3"],
)
def test_foreign_events_are_logged_and_ignored(datasync, capsys, event):
    _, sent = datasync
    assert handler_module.handler(event, None) == {"started": None}
    assert sent == []
    assert logs(capsys)[0]["message"].startswith("ignored")


def test_foreign_events_in_a_batch_do_not_hide_the_valid_ones(datasync):
    _, sent = datasync
    handler_module.handler([s3_event("instant/ok.csv"), s3_event("instant/x.csv", account="999999999999")], None)
    assert includes(sent[0]) == "/ok.csv"


def test_too_long_filter_syncs_all_of_instant_without_filters(datasync, capsys):
    _, sent = datasync
    keys = [f"instant/{i:05d}-{'x' * 100}.csv" for i in range(1000)]  # ~113,000 characters joined
    handler_module.handler([s3_event(k) for k in keys], None)
    [request] = sent
    assert "Includes" not in request
    lines = logs(capsys)
    assert lines[0]["message"].startswith("full instant sync")
    assert lines[0]["filter_length"] > handler_module.MAX_FILTER == 102_400


def test_filter_just_under_the_limit_is_still_used(datasync):
    _, sent = datasync
    keys = [f"instant/{i:05d}-{'x' * 100}.csv" for i in range(900)]
    handler_module.handler([s3_event(k) for k in keys], None)
    assert len(includes(sent[0])) <= 102_400


def test_keys_a_filter_cannot_express_sync_everything(datasync):
    _, sent = datasync
    handler_module.handler(s3_event("instant/a|b.csv"), None)
    assert "Includes" not in sent[0]


def test_execution_that_cannot_start_raises_so_the_event_is_retried(datasync, capsys):
    task, sent = datasync
    handler_module.handler(s3_event("instant/first.csv"), None)
    # moto refuses a second execution while the first runs, as DataSync does without a free queue slot.
    with pytest.raises(ClientError) as raised:
        handler_module.handler(s3_event("instant/second.csv"), None)
    assert raised.value.response["Error"]["Code"] == "InvalidRequestException"
    assert len(sent) == 2
    assert logs(capsys)[-1]["code"] == "InvalidRequestException"


def test_already_running_is_logged_as_a_retry(monkeypatch, capsys):
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    for name, value in {"INSTANT_TASK_ARN": "arn:aws:datasync:eu-west-1:555555555555:task/task-0123456789abcdef0",
                        "EXPECTED_ACCOUNT": DATA_ACCOUNT, "EXPECTED_BUCKET": BUCKET, "PREFIX": "instant/"}.items():
        monkeypatch.setenv(name, value)  # fmt: skip
    client = boto3.client("datasync", aws_access_key_id="x", aws_secret_access_key="x")
    stubber = Stubber(client)
    message = "Cannot start a task execution: an execution of this task is already running or queued"
    stubber.add_client_error("start_task_execution", "InvalidRequestException", message)
    monkeypatch.setattr(handler_module.boto3, "client", lambda *_args, **_kw: client)
    with stubber, pytest.raises(ClientError):
        handler_module.handler(s3_event("instant/report.csv"), None)
    last = logs(capsys)[-1]
    assert last["message"] == "retry: execution already running"
    stubber.assert_no_pending_responses()


def test_every_log_line_is_one_json_object(datasync, capsys):
    handler_module.handler([s3_event("instant/a.csv"), s3_event("hourly/b.csv")], None)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and all(isinstance(json.loads(line), dict) for line in lines)


def test_handler_fits_inline_code():
    assert len(HANDLER.read_bytes()) < 4096
