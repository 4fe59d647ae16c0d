"""render's dumper writes what cfn-flip's own dumper writes, for any template, not just the golden set."""

from __future__ import annotations

import yaml
from cfn_clean import cfn_literal_parser
from cfn_flip.yaml_dumper import get_dumper
from cfn_tools import load_json
from troposphere import AWSObject, GetAtt, Join, Output, Ref, Sub, Template

from generator.images.contexts import image_tags, render_container_files
from generator.registry import builders
from generator.render import HEADER, LINE_WIDTH, render, render_all
from stacksets.build_context import CONTAINER
from stacksets.config import parse_config


def cfn_flip_render(template: Template) -> bytes:
    """render as it was before generator/emitter.py: cfn-flip's Dumper on cfn-tools' ODict tree."""
    body = yaml.dump(
        cfn_literal_parser(load_json(template.to_json(sort_keys=True))),
        Dumper=get_dumper(clean_up=False, long_form=False),
        default_flow_style=False,
        allow_unicode=True,
        width=LINE_WIDTH,
    )
    return (HEADER + body.rstrip("\n") + "\n").encode("utf-8")


# Scalars chosen for the emitter's rules: implicit types that must stay strings, account ids, indicators, leading
# and trailing space, the folding width, cfn-flip's `>` (200 characters) and `|` (10 line breaks) thresholds.
AWKWARD = [
    "", "0", "0123", "007", "123", "1.5", "1e3", "0x1F", "yes", "No", "on", "null", "~", "true", "False",
    "2012-10-17", "12:30", " leading", "trailing ", "a: b", "a #b", "#x", "- x", "? x", "[x]", "{x}", "x, y", "*x",
    "&x", "!x", "|", ">", "'quoted'", '"double"', "it's", "tab\there", "über", "日本", "emoji 🎉", "back\\slash",
    "two\nlines", "nine\n" * 9, "ten\n" * 10, "cr\r\nlf", "line\n", "\nleading break", "x" * 199, "x" * 200,
    ("word " * 40).strip(), ("word " * 20).strip(), "a" * 130 + " b", "=" * 121, "%", "@x", "`x`", "x\u2028y",
    "trailing\n\n", "${AWS::Partition}", "arn:${AWS::Partition}:iam::111111111111:root",
]


class _StateMachine(AWSObject):
    """A state machine whose definition is a mapping, the one place cfn-tools writes a LiteralString."""

    resource_type = "AWS::StepFunctions::StateMachine"
    props = {"DefinitionString": (dict, True)}  # noqa: RUF012 - troposphere's declaration style


def awkward_template() -> Template:
    template = Template(Description="awkward scalars: " + "z" * 150)
    for index, value in enumerate(AWKWARD):
        template.add_output(Output(f"Plain{index:03d}", Value=value))
        template.add_output(Output(f"Sub{index:03d}", Value=Sub(value) if value else Sub("x")))
    template.add_output(Output("Ref", Value=Ref("AWS::Region")))
    template.add_output(Output("GetAtt", Value=GetAtt("Machine", "Name")))
    template.add_output(Output("Join", Value=Join("", ["a", Ref("AWS::AccountId"), "b"])))
    template.add_output(Output("SubMap", Value=Sub("${A}-${B}", A=Ref("AWS::Region"), B="0123")))
    template.set_metadata({
        "Numbers": [0, 1, -5, 1.5, 10**12], "Flags": [True, False], "Empty": {"List": [], "Map": {}},
        "Nested": [[["deep", {"k": [1, {"Ref": "X"}]}]], {"Fn::If": ["C", "a", {"Ref": "AWS::NoValue"}]}],
        "Keys": {value or "empty": value for value in AWKWARD[:40]},
    })  # fmt: skip
    # A state machine definition is cfn-tools' one LiteralString: JSON kept as a block.
    template.add_resource(_StateMachine(
        "Machine", DefinitionString={"StartAt": " x", "States": {" x": {"Type": "Pass", "End": True}}},
    ))  # fmt: skip
    return template


def test_awkward_scalars_are_written_as_cfn_flip_writes_them():
    template = awkward_template()
    assert render(template, "awkward") == cfn_flip_render(template)


def test_every_template_of_a_per_user_config_is_written_as_cfn_flip_writes_it(example_data):
    instance = example_data["instances"]["prod"]
    instance["users"] = {f"user{i:02d}": {"email": f"u{i}@example.com", "uid": 4000 + i} for i in range(6)}
    cfg = parse_config(example_data)
    tags = image_tags(CONTAINER, render_container_files(cfg))
    rendered = render_all(cfg).templates
    for name, build in builders(cfg, tags).items():
        assert rendered[f"{name}.yaml"] == cfn_flip_render(build()), name
