"""Welcome mail (contract: generator/instance/welcome.py). A password goes only into its mail; nothing raises, or
Lambda would retry and mail everybody again."""

import json
import logging
import os
import urllib.request

import boto3

log = logging.getLogger("welcome_email")
log.setLevel(logging.INFO)
env = os.environ

BODY = """Hello {User},

your RStudio on {Instance} is ready.

RStudio: {Url}
User name: {User}
Initial password: {password}
{Shiny}"""


def _mail(user, address, secrets, ses):
    """None, or why not mailed (never the password)."""
    password = None
    try:
        password = secrets.get_secret_value(SecretId=env["SECRET"].format(user))["SecretString"]
        text = BODY.format(User=user, password=password, Instance=env["INSTANCE"], Url=env["URL"].format(user),
                           Shiny=env["SHINY"])
        ses.send_email(Source=env["SENDER"], Destination={"ToAddresses": [address]},
                       Message={"Subject": {"Data": f"Your RStudio on {env['INSTANCE']}"},
                                "Body": {"Text": {"Data": text}}})
    except Exception as error:  # the other users still get their mail
        err = getattr(error, "response", {}).get("Error", {})
        # Only an AWS error's code and message: other exceptions may quote arguments (the mail body).
        why = f"{err.get('Code')}: {err.get('Message')}" if err else type(error).__name__
        why = why.replace(password, "***") if password else why
        log.error("mail failed", extra={"user": user, "error": why})
        return why
    log.info("mail sent", extra={"user": user})


def send(users):
    known, failed = json.loads(env["USERS"]), {}
    secrets, ses = boto3.client("secretsmanager"), boto3.client("ses")
    for user in users:
        address = known.get(user)
        why = _mail(user, address, secrets, ses) if address else "unknown user"
        if why:
            failed.setdefault(why[:300], {})[user] = address or ""
    text = json.dumps(failed, sort_keys=True)
    # CloudFormation takes answers of 4 KB; the log has all.
    return text if len(text) < 2500 else json.dumps({f"{sum(map(len, failed.values()))} users: see the log": {}})


def _respond(event, status, reason, data):
    body = json.dumps({"Status": status, "Reason": reason[:500], "PhysicalResourceId": f"welcome-{env['INSTANCE']}",
                       "StackId": event.get("StackId"), "RequestId": event.get("RequestId"),
                       "LogicalResourceId": event.get("LogicalResourceId"), "Data": data}).encode()
    # The pre-signed URL is signed without a content type, and urllib would add one.
    request = urllib.request.Request(event["ResponseURL"], data=body, method="PUT", headers={"Content-Type": ""})
    for attempt in range(3):
        try:
            return urllib.request.urlopen(request, timeout=20).close()
        except Exception as error:
            log.error("response failed", extra={"attempt": attempt, "error": type(error).__name__})


def handler(event, context):
    kind = event.get("RequestType")
    if kind is None:
        return {"Undelivered": json.loads(send(event.get("resend") or []))}
    status, reason, data = "SUCCESS", "nothing to send", {"Undelivered": "{}"}
    try:
        if kind in ("Create", "Update"):
            old = [u["User"] for u in (event.get("OldResourceProperties") or {}).get("Users", [])]
            new = [u["User"] for u in event["ResourceProperties"]["Users"] if u["User"] not in old]
            data["Undelivered"] = send(new)
            reason = f"{len(new)} to mail; not mailed: {data['Undelivered']}"
    except Exception as error:  # no password is in scope here
        status, reason = "FAILED", f"{type(error).__name__}: {error}"
    log.info("respond", extra={"status": status, "reason": reason})
    try:
        _respond(event, status, reason, data)
    except Exception as error:  # e.g. no ResponseURL
        log.error("response failed", extra={"error": type(error).__name__})
