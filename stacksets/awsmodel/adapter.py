"""The model under a real boto3 client, through botocore's event hooks (as `botocore.stub.Stubber` and moto do).

1. `before-parameter-build`: keep the caller's parameters. botocore then validates them against the service model,
   so a misspelt or mistyped parameter raises ParamValidationError before the model ever sees it.
2. `before-call`: the model answers `(http response, parsed)`; botocore skips the network and, for a status >= 300,
   raises the modeled exception class (`client.exceptions.StackSetNotFoundException`), exactly as for a real answer.
   Successful answers are checked against the operation's output shape, so the model cannot return what AWS never
   would.
A request the model does not own raises ModelGap: clients point at a closed loopback port, so nothing can reach AWS.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from botocore.awsrequest import AWSResponse
from botocore.validate import ParamValidator

if TYPE_CHECKING:
    from stacksets.awsmodel.model import AwsModel

# Nothing listens here: a request that escaped the model fails on this machine instead of reaching AWS.
CLOSED_ENDPOINT = "http://127.0.0.1:9"
_PARAMS = "awsmodel.params"


class ModelError(Exception):
    """An error answer as AWS would send it: the code botocore maps to its exception class, and the HTTP status."""

    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(f"{code}: {message}")
        self.code, self.message, self.status = code, message, status


class ModelGap(Exception):
    """The orchestrator made a call the model does not implement: add it to the model (with its rule and source)."""


def install(aws: AwsModel, client: Any) -> None:
    """Answer every request of `client` from the model `aws`."""
    region = client.meta.region_name
    validator = ParamValidator()

    def keep_params(params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        context[_PARAMS] = dict(params)

    def answer(model: Any, context: dict[str, Any], request_signer: Any, **_: Any) -> tuple[AWSResponse, dict]:
        operation = model  # botocore's name for the OperationModel
        access_key = _access_key(request_signer)
        try:
            parsed = aws.handle(operation.service_model.service_name, operation.name, context.get(_PARAMS, {}),
                                  access_key, region)  # fmt: skip
        except ModelError as error:
            body = {"Error": {"Code": error.code, "Message": error.message, "Type": "Sender"},
                    "ResponseMetadata": {"HTTPStatusCode": error.status}}  # fmt: skip
            return AWSResponse(CLOSED_ENDPOINT, error.status, {}, None), body
        if aws.validate_responses and operation.output_shape is not None:
            report = validator.validate(parsed, operation.output_shape)
            if report.has_errors():
                raise ModelGap(f"the model answered {operation.name} with a shape AWS never sends: "
                               f"{report.generate_report()}")  # fmt: skip
        parsed.setdefault("ResponseMetadata", {"HTTPStatusCode": 200})
        return AWSResponse(CLOSED_ENDPOINT, 200, {}, None), parsed

    client.meta.events.register("before-parameter-build", keep_params)
    client.meta.events.register("before-call", answer)


def _access_key(request_signer: Any) -> str:
    credentials = getattr(request_signer, "_credentials", None)
    if credentials is None:
        return ""
    return credentials.get_frozen_credentials().access_key
