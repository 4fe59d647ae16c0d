"""The buildspec of the central image build: one CodeBuild build turns one uploaded build context into one image.

`deploy.py images` uploads container/<image>/ as contexts/<image>/<tag>.zip and starts a build with IMAGE_NAME and
IMAGE_TAG. The tag is a content hash of the context (stacksets/build_context.py), so the build recomputes it from the
unzipped files before anything else: what CodeBuild builds is exactly what was reviewed and tagged, or nothing.

Each phase is one bash script rather than a list of one-liners: CodeBuild judges a command by its exit status only, so
`set -euo pipefail` at the top of each script is what makes any failing step fail the build, and the skip of an image
that already exists can be a plain `exit 0` in the last script. The scripts run in the reviewed template, so they are
written to be read; nothing in them prints a credential (no `set -x`; the Docker Hub token goes through a pipe).
"""

from __future__ import annotations

import re
import textwrap
from typing import Any

import yaml

from stacksets.naming import DOCKER_HUB_SECRET, IMAGES, build_context_key

# Where a context is unzipped; every build runs in a fresh container, and the script empties it anyway.
CONTEXT_DIR = "/tmp/context"
# The tag rule of stacksets/build_context.py as a shell pipeline: sha256 of the `sha256sum` lines of every file,
# sorted by path in byte order, cut to 20 hex digits. Run in the context directory; prints the hex part of the tag.
CONTEXT_HASH_COMMAND = (
    r"find . -type f -printf '%P\n' | LC_ALL=C sort | xargs -d '\n' sha256sum | sha256sum | cut -c1-20"
)
PLACEHOLDER = re.compile(r"@[A-Z_]+@")

CHECK_REQUEST = r"""
set -euo pipefail
case "${IMAGE_NAME:-}" in
  @IMAGE_PATTERN@) ;;
  *) echo "IMAGE_NAME '${IMAGE_NAME:-}' is not one of the images: @IMAGE_LIST@" >&2; exit 1 ;;
esac
if [[ ! "${IMAGE_TAG:-}" =~ ^ctx-[0-9a-f]{20}$ ]]; then
  echo "IMAGE_TAG '${IMAGE_TAG:-}' is not a build context tag (ctx- and 20 hex digits)" >&2
  exit 1
fi
"""

FETCH_AND_VERIFY_CONTEXT = r"""
set -euo pipefail
key="@CONTEXT_KEY@"
rm -rf @CONTEXT_DIR@ @CONTEXT_DIR@.zip
mkdir -p @CONTEXT_DIR@
aws s3 cp --only-show-errors "s3://$ARTIFACT_BUCKET/$key" @CONTEXT_DIR@.zip
unzip -q @CONTEXT_DIR@.zip -d @CONTEXT_DIR@
# The tag names the content: a context that does not hash to it is not the one that was reviewed and tagged.
actual="ctx-$(cd @CONTEXT_DIR@ && @CONTEXT_HASH_COMMAND@)"
if [[ "$actual" != "$IMAGE_TAG" ]]; then
  echo "s3://$ARTIFACT_BUCKET/$key hashes to $actual, not $IMAGE_TAG: refusing to build it." >&2
  echo "Upload the context again with 'python deploy.py images'." >&2
  exit 1
fi
echo "Build context $key matches its tag $IMAGE_TAG"
"""

REGISTRY_LOGINS = r"""
set -euo pipefail
# Anonymous pulls from CodeBuild's shared addresses hit Docker Hub's rate limit, so the build needs an account.
if [[ -z "${DOCKERHUB_USERNAME:-}" ]]; then
  cat >&2 <<'EOF'
The Secrets Manager secret @SECRET@ holds no Docker Hub account yet: the base images come
from Docker Hub, whose anonymous pull limit CodeBuild runs into. Put a Docker Hub user and access token in it once:
  aws secretsmanager put-secret-value --secret-id @SECRET@ \
    --secret-string '{"username":"...","token":"..."}'
then start the build again.
EOF
  exit 1
fi
printf '%s' "$DOCKERHUB_TOKEN" | docker login --username "$DOCKERHUB_USERNAME" --password-stdin
aws ecr get-login-password | docker login --username AWS --password-stdin "$REGISTRY"
"""

BUILD_PUSH_AND_SCAN = r"""
set -euo pipefail
image="$REGISTRY/$IMAGE_NAME:$IMAGE_TAG"
# Tags are immutable and name their content: an existing tag is this very context, already built and pushed.
if found="$(aws ecr describe-images --repository-name "$IMAGE_NAME" --image-ids imageTag="$IMAGE_TAG" \
    --query 'imageDetails[0].imageDigest' --output text 2>&1)"; then
  echo "$image is already in ECR ($found): nothing to build."
  exit 0
fi
if [[ "$found" != *ImageNotFoundException* ]]; then
  echo "$found" >&2
  exit 1
fi
cd @CONTEXT_DIR@
docker build --pull -t "$image" .
docker push "$image"
# Findings are reported, never fatal (a rocker base always has some), and neither is a scan that does not finish:
# the image is pushed either way, and its findings can be read later.
scan=(--repository-name "$IMAGE_NAME" --image-id imageTag="$IMAGE_TAG")
if aws ecr wait image-scan-complete "${scan[@]}"; then
  echo "Scan findings of $image by severity:"
  aws ecr describe-image-scan-findings "${scan[@]}" --query imageScanFindings.findingSeverityCounts --output json \
    || echo "WARNING: could not read the scan findings of $image" >&2
else
  echo "WARNING: the scan of $image did not complete; read it later with" >&2
  echo "  aws ecr describe-image-scan-findings --repository-name $IMAGE_NAME --image-id imageTag=$IMAGE_TAG" >&2
fi
"""


def _script(text: str) -> str:
    replacements = {
        "@IMAGE_PATTERN@": "|".join(IMAGES),
        "@IMAGE_LIST@": " ".join(IMAGES),
        "@CONTEXT_KEY@": build_context_key("$IMAGE_NAME", "$IMAGE_TAG"),
        "@CONTEXT_DIR@": CONTEXT_DIR,
        "@CONTEXT_HASH_COMMAND@": CONTEXT_HASH_COMMAND,
        "@SECRET@": DOCKER_HUB_SECRET,
    }
    for placeholder, value in replacements.items():
        text = text.replace(placeholder, value)
    if left := PLACEHOLDER.findall(text):
        raise ValueError(f"unreplaced placeholders {left} in a buildspec script")
    return textwrap.dedent(text).strip("\n") + "\n"


def buildspec_data() -> dict[str, Any]:
    """The buildspec as data: what the template's YAML says, for tests to read without parsing shell."""
    return {
        "version": 0.2,
        "env": {"shell": "bash"},
        "phases": {
            "pre_build": {
                "commands": [_script(CHECK_REQUEST), _script(FETCH_AND_VERIFY_CONTEXT), _script(REGISTRY_LOGINS)]
            },
            "build": {"commands": [_script(BUILD_PUSH_AND_SCAN)]},
        },
    }


class _LiteralDumper(yaml.SafeDumper):
    """Multi-line scripts as `|` blocks, so the template shows them as they run."""


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_LiteralDumper.add_representer(str, _represent_str)


def image_buildspec() -> str:
    """The buildspec text for the CodeBuild project's inline Source.BuildSpec."""
    return yaml.dump(buildspec_data(), Dumper=_LiteralDumper, sort_keys=False, width=200, default_flow_style=False)
