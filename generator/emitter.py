"""The YAML dumper behind render: cfn-flip's output, byte for byte, in less time.

cfn-flip's Dumper runs on PyYAML's pure-Python emitter, which spent three quarters of render's time. libyaml's C
emitter cannot stand in for it: it writes the sequences under a mapping key without indentation (`key:\\n- x`,
fixed in libyaml's yaml_emitter_emit_block_sequence_item, no option) and leaves tagged scalars plain
(`!GetAtt A.Arn`, not `!GetAtt 'A.Arn'`), so every committed template would change. This dumper keeps the Python
emitter and cuts the work it repeats:

- templates arrive as plain dicts (json.loads) instead of cfn-tools' ODict, which builds a new class for every
  key of every mapping it hands out; the keys are already sorted by troposphere's to_json(sort_keys=True), so
  PyYAML's own sort keeps the order;
- the analysis of a scalar (which styles it allows) is a pure function of its text, and templates repeat the same
  few hundred strings thousands of times (and the templates of one config each other's), so it is computed once
  per string;
- so are a scalar's implicit tag (the resolver's regular expressions) and the text of a tag;
- a plain scalar without spaces or line breaks is written in one piece (the emitter's loop would find no place to
  fold it and write it in one piece as well).

tests/test_render.py checks the output against cfn-flip's own dumper on every template of several configs and on
scalars chosen for their quoting rules; tests/test_golden.py checks it against the committed templates.
"""

from __future__ import annotations

import re

from cfn_flip import yaml_dumper
from cfn_flip.yaml_dumper import TAG_STR, Dumper, fn_representer, literal_unicode_representer
from cfn_tools.literal import LiteralString
from cfn_tools.yaml_dumper import AWS_ACCOUNT_ID
from yaml.emitter import ScalarAnalysis
from yaml.nodes import ScalarNode
from yaml.representer import BaseRepresenter

_TAG_MAP = "tag:yaml.org,2002:map"
_ACCOUNT_ID = re.compile(AWS_ACCOUNT_ID)
# Shared by every dump of the process: templates of one config repeat each other's strings. Cleared when full so a
# process that renders many configs (the fuzz tests) does not keep every string it ever saw.
_ANALYSES: dict[str, ScalarAnalysis] = {}
_ANALYSES_MAX = 50_000
_BREAK = re.compile("[\n\x85\u2028\u2029]")


def _string_representer(dumper: TemplateDumper, value: str) -> ScalarNode:
    """cfn-flip's string_representer, counting line breaks with str.count instead of a generator."""
    if value.count("\n") + value.count("\r") >= yaml_dumper.STR_MAX_LINES_QUOTED:
        return dumper.represent_scalar(TAG_STR, value, style="|")
    if len(value) >= yaml_dumper.STR_MAX_LENGTH_QUOTED and "\n" not in value:
        return dumper.represent_scalar(TAG_STR, value, style=">")
    if value.startswith("0"):
        return dumper.represent_scalar(TAG_STR, value, style="'")
    return dumper.represent_scalar(TAG_STR, value)


def _map_representer(dumper: TemplateDumper, value: dict) -> object:
    """cfn-flip's map_representer (a one-key `Ref`, `Condition` or `Fn::X` mapping becomes the short-form tag)
    without the ODict copy."""
    if len(value) == 1:
        ((key, inner),) = value.items()
        if key in ("Ref", "Condition"):
            return fn_representer(dumper, key, inner)
        if key.startswith("Fn::"):
            return fn_representer(dumper, key[4:], inner)
    return dumper.represent_mapping(_TAG_MAP, value, flow_style=False)


class TemplateDumper(Dumper):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._analyses = _ANALYSES
        self._scalar_tags: dict[tuple[str, tuple[bool, bool]], str] = {}
        self._tags: dict[str, str] = {}

    def represent_scalar(self, tag: str, value: str, style: str | None = None) -> ScalarNode:
        # cfn-tools' CfnYamlDumper.represent_scalar with its pattern compiled once: account ids keep their leading
        # zero quoted, multi-line strings are double-quoted unless a representer chose a style.
        if _ACCOUNT_ID.match(value):
            style = "'"
        if style is None and ("\n" in value or "\r" in value):
            style = '"'
        return BaseRepresenter.represent_scalar(self, tag, value, style)

    def resolve(self, kind, value, implicit):
        # Without path resolvers (a Dumper has none) a scalar's implicit tag depends on its text alone.
        if kind is not ScalarNode or self.yaml_path_resolvers:
            return super().resolve(kind, value, implicit)
        key = (value, implicit)
        tag = self._scalar_tags.get(key)
        if tag is None:
            tag = self._scalar_tags[key] = super().resolve(kind, value, implicit)
        return tag

    def prepare_tag(self, tag: str) -> str:
        prepared = self._tags.get(tag)
        if prepared is None:
            prepared = self._tags[tag] = super().prepare_tag(tag)
        return prepared

    def analyze_scalar(self, scalar: str) -> ScalarAnalysis:
        # LiteralString (and the empty string) get cfn-tools' fixed analysis; a LiteralString is equal to the str of
        # the same text, so it must not share the cache with it.
        if type(scalar) is not str or not scalar:
            return super().analyze_scalar(scalar)
        analysis = self._analyses.get(scalar)
        if analysis is None:
            if len(self._analyses) >= _ANALYSES_MAX:
                self._analyses.clear()
            analysis = self._analyses[scalar] = super().analyze_scalar(scalar)
        return analysis

    def write_plain(self, text: str, split: bool = True) -> None:
        if self.encoding or not text or " " in text or _BREAK.search(text):
            super().write_plain(text, split)
            return
        # What the emitter's loop does for a text it cannot fold: one write, after a separating space.
        if self.root_context:
            self.open_ended = True
        if not self.whitespace:
            self.column += 1
            self.stream.write(" ")
        self.whitespace = False
        self.indention = False
        self.column += len(text)
        self.stream.write(text)


TemplateDumper.add_representer(dict, _map_representer)
TemplateDumper.add_representer(str, _string_representer)
TemplateDumper.add_representer(LiteralString, literal_unicode_representer)
