"""A standard SDK (botocore) resolves credentials from the AWS config file the RStudio image writes at start.

The task role's credential endpoint and STS are one local HTTP server: botocore must fetch the task role's keys from
the container endpoint (credential_source = EcsContainer), sign an AssumeRole call for the instance's Athena role with
them, and hand back the keys STS returned. Any other chain (the task role used directly, no AssumeRole, another role)
fails the test.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs

import botocore.session
import pytest

from tests.test_container_rstudio import PUBLIC_ENV, run_script, secret

TASK_KEY = "ASIATASKROLEEXAMPLE0"
ATHENA_KEY = "ASIAATHENAROLEXAMPL0"
EXPIRATION = "2099-01-01T00:00:00Z"


class FakeAws(BaseHTTPRequestHandler):
    """GET /task-role: the ECS container credential endpoint. POST /: STS, which answers AssumeRole only."""

    calls: list[dict[str, str]] = []

    def log_message(self, *args: object) -> None:  # keeps pytest's output clean
        pass

    def reply(self, status: int, body: str, content_type: str) -> None:
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        if self.path != "/task-role":
            self.reply(404, "{}", "application/json")
            return
        creds = {"AccessKeyId": TASK_KEY, "SecretAccessKey": "task-secret", "Token": "task-token",
                 "Expiration": EXPIRATION}  # fmt: skip
        self.reply(200, json.dumps(creds), "application/json")

    def do_POST(self) -> None:  # noqa: N802
        body = self.rfile.read(int(self.headers["Content-Length"])).decode()
        form = {name: values[0] for name, values in parse_qs(body).items()}
        form["Authorization"] = self.headers.get("Authorization", "")
        form["X-Amz-Security-Token"] = self.headers.get("X-Amz-Security-Token", "")
        FakeAws.calls.append(form)
        if form.get("Action") != "AssumeRole":
            self.reply(400, "<ErrorResponse/>", "text/xml")
            return
        self.reply(200, f"""<AssumeRoleResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><AssumeRoleResult>
<Credentials><AccessKeyId>{ATHENA_KEY}</AccessKeyId><SecretAccessKey>athena-secret</SecretAccessKey>
<SessionToken>athena-token</SessionToken><Expiration>{EXPIRATION}</Expiration></Credentials>
<AssumedRoleUser><AssumedRoleId>AROAEXAMPLE:s</AssumedRoleId><Arn>{form.get("RoleArn")}/s</Arn></AssumedRoleUser>
</AssumeRoleResult></AssumeRoleResponse>""", "text/xml")


@pytest.fixture
def fake_aws() -> Iterator[str]:
    FakeAws.calls = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeAws)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    thread.join()


def test_botocore_assumes_the_athena_role_with_the_task_role_credentials(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fake_aws: str) -> None:  # fmt: skip
    run = run_script(tmp_path, "alice:3001", {"PASSWORD_ALICE": secret(), "SECURE_COOKIE_KEY": secret()})
    assert run.result.returncode == 0, run.result.stderr
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
                 "AWS_DEFAULT_PROFILE", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_REGION", "AWS_DEFAULT_REGION",
                 "AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE"):  # fmt: skip
        monkeypatch.delenv(name, raising=False)
    # What the R session has: the shipped file as AWS_CONFIG_FILE, and the container endpoint of the task role.
    monkeypatch.setenv("AWS_CONFIG_FILE", str(run.root / "etc/aws/config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials-file"))
    monkeypatch.setenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", f"{fake_aws}/task-role")
    monkeypatch.setenv("AWS_ENDPOINT_URL_STS", fake_aws)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")

    session = botocore.session.Session()
    assert session.get_config_variable("region") == PUBLIC_ENV["ATHENA_REGION"]
    credentials = session.get_credentials()
    assert credentials.method == "assume-role"
    frozen = credentials.get_frozen_credentials()

    assert (frozen.access_key, frozen.token) == (ATHENA_KEY, "athena-token")
    [call] = FakeAws.calls
    assert call["Action"] == "AssumeRole"
    assert call["RoleArn"] == PUBLIC_ENV["ATHENA_ROLE_ARN"]
    # Signed with the task role's keys from the container endpoint, so the source really was EcsContainer.
    assert f"Credential={TASK_KEY}/" in call["Authorization"]
    assert call["X-Amz-Security-Token"] == "task-token"
