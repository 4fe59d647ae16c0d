"""What the instance's custom-resource functions share: code inlined from lambda_src/ and their logging setup."""

from __future__ import annotations

from pathlib import Path

from troposphere.awslambda import LoggingConfig

INLINE_CODE_LIMIT = 4096  # CloudFormation's limit for Code.ZipFile
# CloudFormation fails the resource after this long without an answer, instead of waiting an hour.
RESPONSE_TIMEOUT_SECONDS = 300


class FunctionLoggingConfig(LoggingConfig):
    # troposphere 4.11.1 lets a later, same-named class shadow Function's LoggingConfig, which drops LogFormat.
    props = {**LoggingConfig.props, "LogFormat": (str, False)}


def inline_code(handler: Path) -> str:
    """The handler file itself, so the tested file is the code that runs and any change shows in the template diff."""
    code = handler.read_text(encoding="utf-8")
    if len(code.encode()) >= INLINE_CODE_LIMIT:
        raise ValueError(f"{handler} is {len(code.encode())} bytes; inline Lambda code must stay under 4096")
    return code
