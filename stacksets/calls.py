"""Every AWS call the executor makes: counted per API and per StackSet, throttling retried, credentials explained."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError, NoCredentialsError, TokenRetrievalError
from botocore.parsers import ResponseParserError

from stacksets.aws import CREDENTIAL_ERRORS, AwsError, explain

if TYPE_CHECKING:
    from stacksets.run import Run

THROTTLING = {"Throttling", "ThrottlingException", "TooManyRequestsException", "RequestLimitExceeded",
              "SlowDown"}  # fmt: skip
MUTATING = {"create_stack_set", "update_stack_set", "delete_stack_set", "create_stack_instances",
            "update_stack_instances", "delete_stack_instances", "detect_stack_set_drift", "create_bucket",
            "put_public_access_block", "put_bucket_encryption", "put_object", "start_build",
            "put_image"}  # fmt: skip
THROTTLE_ATTEMPTS = 8
THROTTLE_BASE_S = 1.0
THROTTLE_CAP_S = 20.0


class CredentialsError(AwsError):
    """Credentials expired or missing: the whole run stops (every further call would fail the same way)."""


def error_code(error: Exception) -> str:
    return error.response.get("Error", {}).get("Code", "") if isinstance(error, ClientError) else ""


def not_implemented(error: Exception) -> bool:
    """moto answers unimplemented actions with HTTP 500 (botocore cannot parse the HTML page)."""
    if isinstance(error, ResponseParserError):
        return True
    if isinstance(error, ClientError):
        status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        return error_code(error) in ("NotImplemented", "InternalFailure", "NotImplementedError") or status == 500
    return False


def call(run: Run, client: Any, api: str, **kwargs: Any) -> Any:
    """One AWS call: throttling retried with exponential backoff and jitter, credential errors explained."""
    for attempt in range(THROTTLE_ATTEMPTS):
        run.count(api, mutating=api in MUTATING)
        try:
            return getattr(client, api)(**kwargs)
        except (NoCredentialsError, TokenRetrievalError) as error:
            raise CredentialsError(str(explain(error))) from None
        except ClientError as error:
            code = error_code(error)
            if code in CREDENTIAL_ERRORS:
                raise CredentialsError(str(explain(error))) from None
            if code not in THROTTLING or attempt == THROTTLE_ATTEMPTS - 1:
                raise
            run.sleep(min(THROTTLE_CAP_S, THROTTLE_BASE_S * 2**attempt) * (0.5 + run.random() / 2))
    raise AssertionError("unreachable")


def pages(run: Run, client: Any, api: str, key: str, **kwargs: Any) -> list[Any]:
    """Every item of a paginated list call."""
    items: list[Any] = []
    while True:
        page = call(run, client, api, **kwargs)
        items += page.get(key, [])
        token = page.get("NextToken")
        if not token:
            return items
        kwargs["NextToken"] = token
