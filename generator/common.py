"""Small pieces every stack module uses: the template itself, retention of data, and checkov suppressions."""

from __future__ import annotations

from typing import TypeVar

from troposphere import AWSObject, Template

R = TypeVar("R", bound=AWSObject)


def new_template(module_doc: str | None) -> Template:
    """A template whose description is the first line of the stack module's docstring (one source of truth)."""
    if not module_doc:
        raise ValueError("every stack module needs a docstring: its first line is the template description")
    template = Template()
    template.set_version("2010-09-09")
    template.set_description(module_doc.strip().splitlines()[0])
    return template


def retain(resource: R) -> R:
    """Keep data when the stack is deleted or the resource replaced; destroy names what it leaves behind. A first
    create that rolls back deletes it (RetainExceptOnCreate): nothing can hold data yet, and a kept resource with a
    fixed name would make every retry fail with AlreadyExists."""
    resource.DeletionPolicy = "RetainExceptOnCreate"
    resource.UpdateReplacePolicy = "Retain"
    return resource


def skip_checkov(resource: R, **reasons: str) -> R:
    """Record next to the resource why a checkov check does not apply: skip_checkov(r, CKV_AWS_18="...")."""
    metadata = dict(getattr(resource, "Metadata", {}) or {})
    skips = list(metadata.get("checkov", {}).get("skip", []))
    skips += [{"id": check, "comment": reason} for check, reason in sorted(reasons.items())]
    metadata["checkov"] = {"skip": skips}
    resource.Metadata = metadata
    return resource
