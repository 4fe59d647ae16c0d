"""CloudFormation custom resource: e-mail each RStudio user their URLs and initial password through SES.

Create mails every user; Update mails only users with a new name (nobody gets a second mail); Delete does nothing.
A password goes only into the mail body, never into a log line or the response. The handler reports every outcome
to CloudFormation and never raises: Lambda would retry the invocation and mail everybody again.
"""

import json
import logging
import urllib.request

import boto3

log = logging.getLogger("welcome_email")
log.setLevel(logging.INFO)

BODY = """Hello {User},

your RStudio on {Instance} is ready.

RStudio: {Url}
User name: {User}
Initial password: {password}

Shiny: {ShinyUrl}
Shiny apps you save in /srv/shiny-server (one folder per app) are published there.
"""


def _mail(props, user, secrets, ses):
    """Send one user's mail; return None, or why it failed (without the password)."""
    password = None
    try:
        password = secrets.get_secret_value(SecretId=user["SecretArn"])["SecretString"]
        text = BODY.format(password=password, Instance=props["Instance"], ShinyUrl=props["ShinyUrl"], **user)
        ses.send_email(Source=props["Sender"], Destination={"ToAddresses": [user["Email"]]},
                       Message={"Subject": {"Data": f"Your RStudio on {props['Instance']}"},
                                "Body": {"Text": {"Data": text}}})
    except Exception as error:  # one user's failure is reported; the others still get their mail
        err = getattr(error, "response", {}).get("Error", {})
        # Only an AWS error's code and message: other exceptions may quote arguments (the mail body).
        why = f"{err.get('Code')}: {err.get('Message')}" if err else type(error).__name__
        why = f"{user['User']}: {why.replace(password, '***') if password else why}"
        log.error("mail failed", extra={"user": user["User"], "error": why})
        return why
    log.info("mail sent", extra={"user": user["User"]})
    return None


def _respond(event, props, status, reason):
    body = json.dumps({
        "Status": status, "Reason": reason[:1000], "PhysicalResourceId": f"welcome-{props.get('Instance')}",
        "StackId": event.get("StackId"), "RequestId": event.get("RequestId"),
        "LogicalResourceId": event.get("LogicalResourceId"),
    }).encode()
    # The pre-signed URL is signed without a content type, and urllib would add one.
    request = urllib.request.Request(event["ResponseURL"], data=body, method="PUT", headers={"Content-Type": ""})
    for attempt in range(3):
        try:
            urllib.request.urlopen(request, timeout=20).close()
            return
        except Exception as error:
            log.error("response failed", extra={"attempt": attempt, "error": type(error).__name__})


def handler(event, context):
    props = event.get("ResourceProperties") or {}
    kind = event.get("RequestType")
    status, reason = "SUCCESS", "nothing to send"
    try:
        if kind in ("Create", "Update"):
            old = {u["User"] for u in (event.get("OldResourceProperties") or {}).get("Users", [])}
            new = [u for u in props["Users"] if u["User"] not in old]
            secrets, ses = boto3.client("secretsmanager"), boto3.client("ses")
            problems = [p for p in (_mail(props, u, secrets, ses) for u in new) if p]
            if problems:
                status, reason = "FAILED", "welcome e-mail failed for " + "; ".join(problems)
            elif new:
                reason = "mailed " + ", ".join(u["User"] for u in new)
    except Exception as error:  # no password is in scope here
        status, reason = "FAILED", f"{type(error).__name__}: {error}"
    log.info("respond", extra={"request": kind, "status": status, "reason": reason})
    try:
        _respond(event, props, status, reason)
    except Exception as error:  # e.g. no ResponseURL: raising would only retry the mails
        log.error("response failed", extra={"error": type(error).__name__})
