"""CloudFormation custom resource: on Delete, lift scale-in protection from the instances of an Auto Scaling group.

ECS managed termination protection marks instances ProtectedFromScaleIn and never clears the mark once the capacity
provider is gone (aws/containers-roadmap#2862), so CloudFormation's deletion of the group, which scales it to zero
and waits, would wait until it fails. The stack deletes this resource after the ECS services (they depend on it), so
no task needs the protection any more, and before the group (it refers to the group). Create and Update change
nothing. Every request is answered, FAILED with the reason on any error: an unanswered one holds the stack until
the ServiceTimeout.
"""

import json
import logging
import urllib.request

import boto3

log = logging.getLogger("asg_release")
log.setLevel(logging.INFO)

BATCH = 50  # SetInstanceProtection takes at most 50 instance ids per call


def protected_instances(autoscaling, group):
    ids, token = [], None
    while True:
        page = autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[group],
                                                        **({"NextToken": token} if token else {}))
        for found in page["AutoScalingGroups"]:
            ids += [i["InstanceId"] for i in found.get("Instances", []) if i.get("ProtectedFromScaleIn")]
        token = page.get("NextToken")
        if not token:
            return ids


def release(group):
    autoscaling = boto3.client("autoscaling")
    ids = protected_instances(autoscaling, group)
    for start in range(0, len(ids), BATCH):
        autoscaling.set_instance_protection(InstanceIds=ids[start:start + BATCH], AutoScalingGroupName=group,
                                            ProtectedFromScaleIn=False)
    return f"lifted scale-in protection from {len(ids)} instance(s) of {group}"


def _respond(event, status, reason, physical_id):
    body = json.dumps({
        "Status": status, "Reason": reason[:1000], "PhysicalResourceId": physical_id,
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
    kind = event.get("RequestType")
    group = (event.get("ResourceProperties") or {}).get("AutoScalingGroupName", "")
    # The id follows the group: an Update to a new group reads as a replacement, so CloudFormation sends the old id a
    # Delete, with the old group, when it cleans up.
    physical_id = f"asg-release-{group}"
    if kind == "Delete":
        physical_id = event.get("PhysicalResourceId") or physical_id
    status, reason = "SUCCESS", "nothing to do before the group is deleted"
    try:
        if kind == "Delete":
            reason = release(group)
    except Exception as error:
        err = getattr(error, "response", {}).get("Error", {})
        status = "FAILED"
        reason = f"{err.get('Code')}: {err.get('Message')}" if err else f"{type(error).__name__}: {error}"
    log.info("respond", extra={"request": kind, "status": status, "reason": reason})
    try:
        _respond(event, status, reason, physical_id)
    except Exception as error:  # e.g. no ResponseURL: nothing else could answer
        log.error("response failed", extra={"error": type(error).__name__})
