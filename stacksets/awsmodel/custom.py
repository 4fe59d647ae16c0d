"""Custom resources: the Lambda function the stack itself deploys, run on the model.

CloudFormation invokes the function named by ServiceToken and waits for the response it PUTs to the pre-signed
ResponseURL (user guide, "Custom resources"). The model runs the function's inline code (`Code.ZipFile`, the very
bytes the template deploys) with `boto3` clients that are real boto3 clients on the model, acting as the function's
execution role, so SES and Secrets Manager answer as the model's account would, and IAM checks the role's policies.
`os.environ` holds the function's Environment Variables and the Region, as Lambda sets them, not this machine's.
The response the code PUTs is captured instead of sent.

An update that changes a custom resource's properties sends it an Update request with OldResourceProperties; the
answer's Data replaces the attributes, as a Create's does (user guide, custom resource request types).

Rules (docs/aws_model.md):
- SES sends only from a verified identity (address or its domain); while an account's SES is in the sandbox, every
  recipient must be verified too (SES developer guide, "Moving out of the Amazon SES sandbox"). Accounts start in
  the sandbox; the scenario's `ses` lists what is verified (default: everything).
- A response with Status FAILED fails the resource with its Reason (worded by the engine as CloudFormation does);
  no response at all fails it, as CloudFormation does after the ServiceTimeout.
- Deleting the resource (stack deletion, rollback, replacement, removal by an update) sends a Delete request with
  the resource's physical id and its last properties; its answer decides DELETE_COMPLETE or DELETE_FAILED (user
  guide, crpg-ref-requesttypes-delete.html: the provider "must respond successfully to a delete request"). Update
  requests are not sent.
"""

from __future__ import annotations

import builtins
import io
import json
import os
import re
import types
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from stacksets.awsmodel.model import AwsModel

RESPONSE_URL = "https://cloudformation-custom-resource-response.model.invalid/response"


def run_custom_resource(model: AwsModel, stack: Any, logical_id: str, resource_type: str, properties: dict[str, Any],
                        request: str = "Create", old: Any = None) -> tuple[bool, dict[str, Any], str]:
    """(ok, data for GetAtt, reason) of a `request` (Create, Update or Delete) to the function behind `ServiceToken`;
    `old` is the resource as it was (Update and Delete)."""
    function = _function(stack, properties.get("ServiceToken", ""))
    if function is None:
        return True, {}, ""  # not one of this stack's functions: nothing the model can run
    code = (function.properties.get("Code") or {}).get("ZipFile")
    role = str(function.properties.get("Role", "")).rsplit("/", 1)[-1]
    if not code or not role:
        return False, {}, f"custom resource {logical_id}: its function has no inline code or role the model can run"
    responses: list[dict[str, Any]] = []
    variables = (function.properties.get("Environment") or {}).get("Variables") or {}
    environ = {**{k: str(v) for k, v in variables.items()}, "AWS_REGION": stack.region,
               "AWS_DEFAULT_REGION": stack.region}  # fmt: skip
    namespace: dict[str, Any] = {"__name__": "handler",
                                 "__builtins__": _builtins(model, stack, role, responses, environ)}  # fmt: skip
    exec(compile(code, f"<{function.logical_id} inline code>", "exec"), namespace)  # noqa: S102 - the template's code
    handler_name = str(function.properties.get("Handler", "index.handler")).rsplit(".", 1)[-1]
    event = {"RequestType": request, "ResponseURL": RESPONSE_URL, "StackId": stack.stack_id,
             "RequestId": f"{stack.name}-{logical_id}-{request}-{len(stack.events)}", "LogicalResourceId": logical_id,
             "ResourceType": resource_type, "ResourceProperties": {k: v for k, v in properties.items()}}  # fmt: skip
    if old is not None:
        event["PhysicalResourceId"] = old.physical_id
        if request == "Update":
            event["OldResourceProperties"] = {k: v for k, v in old.properties.items()}
    namespace[handler_name](event, None)
    if not responses:
        return False, {}, f"CloudFormation did not receive a response from your Custom Resource ({logical_id})"
    answer = responses[-1]
    if answer.get("Status") != "SUCCESS":
        return False, {}, str(answer.get("Reason", ""))  # the engine words it as CloudFormation does
    return True, dict(answer.get("Data") or {}), ""


def _function(stack: Any, token: str) -> Any:
    for resource in stack.resources.values():
        if resource.resource_type == "AWS::Lambda::Function" and resource.attributes.get("Arn") == token:
            return resource
    return None


def _builtins(model: AwsModel, stack: Any, role: str, responses: list[dict[str, Any]],
              environ: dict[str, str]) -> dict[str, Any]:  # fmt: skip
    """Python's builtins with an `__import__` that hands the function model-backed `boto3`, a `urllib.request`
    that captures the response instead of sending it, and an `os` whose environ is the function's."""
    real_import = builtins.__import__
    boto3_shim = types.SimpleNamespace(client=lambda service, **kw: model.client_as(stack.account, stack.region,
                                                                                    role, service))  # fmt: skip
    urllib_shim = types.SimpleNamespace(request=types.SimpleNamespace(Request=_Request,
                                                                      urlopen=_capture(responses)))  # fmt: skip

    os_shim = types.SimpleNamespace(**{**vars(os), "environ": environ})

    def model_import(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "boto3":
            return boto3_shim
        if name == "os":
            return os_shim
        if name in ("urllib", "urllib.request"):
            return urllib_shim
        return real_import(name, *args, **kwargs)

    return {**vars(builtins), "__import__": model_import}


class _Request:
    def __init__(self, url: str, data: bytes | None = None, method: str = "GET", headers: Any = None) -> None:
        self.url, self.data, self.method = url, data, method


def _capture(responses: list[dict[str, Any]]) -> Any:
    def urlopen(request: _Request, timeout: float | None = None) -> io.BytesIO:
        if request.url != RESPONSE_URL or request.method != "PUT":
            raise OSError(f"the model only answers the custom resource's ResponseURL, not {request.url}")
        responses.append(json.loads(request.data or b"{}"))
        return io.BytesIO(b"")

    return urlopen


def verified(address: str, identities: frozenset[str] | None) -> bool:
    """SES sends as or to an address when it or its domain is a verified identity."""
    return identities is None or address in identities or re.sub(r"^.*@", "", address) in identities
