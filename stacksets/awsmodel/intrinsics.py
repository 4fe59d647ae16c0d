"""Templates as CloudFormation reads them: the parse (cached by the body's sha256), the reference graph, parameters,
conditions and the intrinsic functions (intrinsic function reference,
https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/intrinsic-function-reference.html).
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from cfn_tools import load_yaml

from stacksets.awsmodel.resources import known_attributes


class TemplateError(Exception):
    """What CreateStack/UpdateStack refuses as a ValidationError before starting."""


class EvaluationError(Exception):
    """An intrinsic that cannot be resolved while the stack runs; it fails the resource that needs it."""


NO_VALUE = object()  # AWS::NoValue: the property is removed (pseudo parameters reference)
_SUB_VARIABLE = re.compile(r"\$\{([^}]*)\}")
PSEUDO_PARAMETERS = {"AWS::AccountId", "AWS::Region", "AWS::Partition", "AWS::StackName", "AWS::StackId",
                     "AWS::URLSuffix", "AWS::NoValue", "AWS::NotificationARNs"}


@dataclass(frozen=True)
class Template:
    sha256: str
    parameters: dict[str, dict[str, Any]]
    conditions: dict[str, Any]
    mappings: dict[str, Any]
    resources: dict[str, dict[str, Any]]
    outputs: dict[str, dict[str, Any]]
    dependencies: dict[str, frozenset[str]]   # Ref, GetAtt, Sub and DependsOn targets, per resource
    order: tuple[str, ...]                    # a topological order of all resources, template order on ties
    imports: frozenset[str]                   # literal Fn::ImportValue names, which CreateStack checks up front


# Module-level so that pickling a world never carries parsed templates, and one parse serves every stack.
_PARSED: dict[str, Template | TemplateError] = {}


def parse(body: str) -> Template:
    key = hashlib.sha256(body.encode()).hexdigest()
    cached = _PARSED.get(key)
    if cached is None:
        try:
            cached = _build(key, body)
        except TemplateError as error:
            cached = error
        _PARSED[key] = cached
    if isinstance(cached, TemplateError):
        raise cached
    return cached


def _plain(node: Any) -> Any:
    if isinstance(node, dict):
        return {str(k): _plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_plain(v) for v in node]
    return node


def _build(key: str, body: str) -> Template:
    try:
        data = _plain(load_yaml(body))
    except Exception as error:  # cfn_tools raises yaml and json errors alike
        raise TemplateError(f"Template format error: YAML not well-formed. {error}") from None
    if not isinstance(data, dict) or not isinstance(data.get("Resources"), dict) or not data["Resources"]:
        raise TemplateError("Template format error: At least one Resources member must be defined.")
    resources = data["Resources"]
    parameters = data.get("Parameters") or {}
    for logical_id, resource in resources.items():
        if not isinstance(resource, dict) or "Type" not in resource:
            raise TemplateError(f"Template format error: [/Resources/{logical_id}] Every Resources object must "
                                "contain a Type member.")
    dependencies = {lid: frozenset(_references(lid, res, resources, parameters)) for lid, res in resources.items()}
    for lid, output in (data.get("Outputs") or {}).items():
        _references(lid, [output.get("Value"), output.get("Export")], resources, parameters)
    template = Template(key, parameters, data.get("Conditions") or {}, data.get("Mappings") or {}, resources,
                    data.get("Outputs") or {}, dependencies, _topological(resources, dependencies),
                    frozenset(_literal_imports(resources)))
    for resource in resources.values():  # only once the template is kept for good (see _STATIC)
        if isinstance(resource.get("Properties"), (dict, list)):
            # never a temporary (`or {}`): its id would be freed, reused by a later node, and read as static
            _is_static(resource["Properties"])
    return template


def _literal_imports(node: Any) -> set[str]:
    if isinstance(node, list):
        return set().union(*map(_literal_imports, node)) if node else set()
    if not isinstance(node, dict):
        return set()
    found = {node["Fn::ImportValue"]} if isinstance(node.get("Fn::ImportValue"), str) else set()
    return found.union(*map(_literal_imports, node.values()))


def _references(owner: str, node: Any, resources: dict, parameters: dict) -> set[str]:
    """Resources `node` refers to; unknown names and attributes are template errors, as CreateStack reports them."""
    found: set[str] = set()

    def target(name: str, attribute: str | None) -> None:
        if name in resources:
            found.add(name)
            allowed = known_attributes(resources[name]["Type"]) if attribute else None
            if allowed is not None and attribute.split(".")[0] not in allowed:
                raise TemplateError(f"Template error: resource {name} does not support attribute type {attribute} "
                                    "in Fn::GetAtt")
        elif attribute is not None:
            raise TemplateError(f"Template error: instance of Fn::GetAtt references undefined resource {name}")
        elif name not in parameters and name not in PSEUDO_PARAMETERS:
            raise TemplateError(f"Template format error: Unresolved resource dependencies [{name}] in the Resources "
                                "block of the template")

    def walk(n: Any) -> None:
        if isinstance(n, list):
            for item in n:
                walk(item)
        elif isinstance(n, dict):
            for k, v in n.items():
                if k == "Ref" and isinstance(v, str):
                    target(v, None)
                elif k == "Fn::GetAtt":
                    name, attribute = v.split(".", 1) if isinstance(v, str) else (v[0], v[1])
                    target(name, attribute if isinstance(attribute, str) else "")
                elif k == "Fn::Sub":
                    text, variables = (v, {}) if isinstance(v, str) else (v[0], v[1])
                    walk(variables)
                    for var in _SUB_VARIABLE.findall(text):
                        if not var.startswith("!") and var not in variables:
                            name, _, attribute = var.partition(".")
                            target(name, attribute or None)
                else:
                    walk(v)

    if owner in resources and node is resources[owner]:
        walk(node.get("Properties") or {})
        depends_on = node.get("DependsOn") or []
        for dep in [depends_on] if isinstance(depends_on, str) else depends_on:
            if dep not in resources:
                raise TemplateError(f"Template format error: Unresolved resource dependencies [{dep}] in the "
                                    "Resources block of the template")
            found.add(dep)
        return found
    walk(node)
    return found


def _topological(resources: dict, dependencies: dict[str, frozenset[str]]) -> tuple[str, ...]:
    position = {lid: i for i, lid in enumerate(resources)}
    pending = {lid: set(deps) for lid, deps in dependencies.items()}
    order: list[str] = []
    done: set[str] = set()
    while pending:
        ready = sorted((lid for lid, deps in pending.items() if deps <= done), key=position.__getitem__)
        if not ready:
            raise TemplateError(f"Circular dependency between resources: {sorted(pending)}")
        for lid in ready:
            order.append(lid)
            done.add(lid)
            del pending[lid]
    return tuple(order)


def parameter_values(template: Template, given: Mapping[str, str]) -> tuple[dict[str, str], dict[str, Any]]:
    """(the parameters as DescribeStacks shows them, their values as the template sees them)."""
    unknown = sorted(set(given) - set(template.parameters))
    if unknown:
        raise TemplateError(f"Parameters: [{', '.join(unknown)}] do not exist in the template")
    missing = sorted(k for k, d in template.parameters.items() if k not in given and "Default" not in d)
    if missing:
        raise TemplateError(f"Parameters: [{', '.join(missing)}] must have values")
    shown: dict[str, str] = {}
    typed: dict[str, Any] = {}
    for key, declaration in template.parameters.items():
        raw = given[key] if key in given else declaration["Default"]
        raw = ",".join(map(str, raw)) if isinstance(raw, list) else str(raw)
        _check_allowed(key, raw, declaration)
        shown[key] = raw
        typed[key] = _typed(raw, str(declaration.get("Type", "String")))
    return shown, typed


def _check_allowed(key: str, value: str, declaration: dict[str, Any]) -> None:
    allowed = declaration.get("AllowedValues")
    if allowed and value not in [str(a) for a in allowed]:
        raise TemplateError(f"Parameter '{key}' must be one of AllowedValues")
    pattern = declaration.get("AllowedPattern")
    if pattern and not re.fullmatch(str(pattern), value):
        raise TemplateError(f"Parameter '{key}' must match pattern {pattern}")


def _typed(raw: str, declared: str) -> Any:
    if declared.startswith("AWS::SSM::Parameter::Value<"):
        inner = declared[len("AWS::SSM::Parameter::Value<"):-1]
        resolved = "ami-0123456789abcdef0" if inner.endswith("Image::Id") else f"resolved-{raw.strip('/')}"
        return _typed(resolved, inner)
    if declared == "CommaDelimitedList" or declared.startswith("List<"):
        return [item.strip() for item in raw.split(",")] if raw else []
    return raw


@dataclass
class Scope:
    """Everything an intrinsic may read while one stack runs."""

    template: Template
    parameters: dict[str, Any]
    pseudo: dict[str, Any]
    conditions: dict[str, bool]
    refs: Callable[[str], Any]                  # logical id -> Ref value (EvaluationError if not created)
    attribute: Callable[[str, str], Any]        # (logical id, attribute) -> GetAtt value
    import_value: Callable[[str], str]
    region: str


def evaluate_conditions(template: Template, parameters: dict[str, Any], pseudo: dict[str, Any]) -> dict[str, bool]:
    results: dict[str, bool] = {}
    scope = Scope(template, parameters, pseudo, results, _no_resource, _no_attribute, _no_import, pseudo["AWS::Region"])

    def condition(name: str) -> bool:
        if name not in results:
            if name not in template.conditions:
                raise TemplateError(f"Template format error: Unresolved condition dependency {name}")
            results[name] = bool(_condition_value(template.conditions[name], scope, condition))
        return results[name]

    for name in template.conditions:
        condition(name)
    return results


def _condition_value(node: Any, scope: Scope, condition: Callable[[str], bool]) -> Any:
    if isinstance(node, dict) and len(node) == 1:
        (key, args), = node.items()
        if key == "Condition":
            return condition(args)
        if key == "Fn::Equals":
            a, b = (_condition_value(x, scope, condition) for x in args)
            return str(a) == str(b)
        if key == "Fn::And":
            return all(_condition_value(x, scope, condition) for x in args)
        if key == "Fn::Or":
            return any(_condition_value(x, scope, condition) for x in args)
        if key == "Fn::Not":
            return not _condition_value(args[0], scope, condition)
    return evaluate(node, scope)


def _no_resource(name: str) -> Any:
    raise TemplateError(f"Template error: Conditions can only be boolean operations on parameters (Ref {name})")


def _no_attribute(name: str, attribute: str) -> Any:
    raise TemplateError("Template error: Conditions can only be boolean operations on parameters")


def _no_import(name: str) -> str:
    raise TemplateError("Template error: Conditions cannot use Fn::ImportValue")


# Template subtrees without intrinsics, by id: they are returned as they are, never copied. Safe because parsed
# templates live in _PARSED for the life of the process (ids are never reused) and nobody mutates them.
_STATIC: dict[int, bool] = {}


def _is_static(node: Any) -> bool:
    known = _STATIC.get(id(node))
    if known is None:
        if isinstance(node, dict):
            known = not (len(node) == 1 and next(iter(node)) in _FUNCTIONS) and all(map(_is_static, node.values()))
        elif isinstance(node, list):
            known = all(map(_is_static, node))
        else:
            return True
        _STATIC[id(node)] = known
    return known


def evaluate(node: Any, scope: Scope) -> Any:
    if id(node) in _STATIC and _STATIC[id(node)]:
        return node
    if isinstance(node, list):
        values = [evaluate(item, scope) for item in node]
        return [v for v in values if v is not NO_VALUE]
    if not isinstance(node, dict):
        return node
    if len(node) == 1:
        (key, args), = node.items()
        function = _FUNCTIONS.get(key)
        if function is not None:
            return function(args, scope)
    values = {k: evaluate(v, scope) for k, v in node.items()}
    return {k: v for k, v in values.items() if v is not NO_VALUE}


def _ref(name: str, scope: Scope) -> Any:
    if name in scope.pseudo:
        return NO_VALUE if name == "AWS::NoValue" else scope.pseudo[name]
    if name in scope.parameters:
        return scope.parameters[name]
    return scope.refs(name)


def _get_att(args: Any, scope: Scope) -> Any:
    name, attribute = args.split(".", 1) if isinstance(args, str) else (args[0], evaluate(args[1], scope))
    return scope.attribute(name, attribute)


def _sub(args: Any, scope: Scope) -> str:
    text, variables = (args, {}) if isinstance(args, str) else (args[0], evaluate(args[1], scope))

    def one(match: re.Match[str]) -> str:
        var = match.group(1)
        if var.startswith("!"):
            return "${" + var[1:] + "}"
        if var in variables:
            value = variables[var]
        elif "." in var and var.split(".")[0] not in scope.parameters and var not in scope.pseudo:
            value = scope.attribute(*var.split(".", 1))
        else:
            value = _ref(var, scope)
        if isinstance(value, list):
            raise EvaluationError(f"Template error: variable {var} in Fn::Sub expression does not resolve to a string")
        return str(value)

    return _SUB_VARIABLE.sub(one, text)


def _join(args: Any, scope: Scope) -> str:
    delimiter, items = args[0], evaluate(args[1], scope)
    if not isinstance(items, list):
        raise EvaluationError("Template error: every Fn::Join object requires two parameters, (1) a string delimiter "
                              "and (2) a list of strings to be joined or a function that returns a list of strings")
    return delimiter.join(str(i) for i in items)


def _select(args: Any, scope: Scope) -> Any:
    index, items = int(evaluate(args[0], scope)), evaluate(args[1], scope)
    if not isinstance(items, list) or not 0 <= index < len(items):
        raise EvaluationError("Template error: Fn::Select cannot select nonexistent value at index " + str(index))
    return items[index]


def _cidr(args: Any, scope: Scope) -> list[str]:
    block, count, bits = (evaluate(a, scope) for a in args)
    network = ipaddress.ip_network(str(block), strict=False)
    prefix = network.max_prefixlen - int(bits)
    if prefix < network.prefixlen:
        raise EvaluationError(f"Template error: Fn::Cidr cannot split {block} into /{prefix} blocks")
    subnets = []
    for subnet in network.subnets(new_prefix=prefix):
        subnets.append(str(subnet))
        if len(subnets) == int(count):
            return subnets
    raise EvaluationError(f"Template error: Fn::Cidr cannot make {count} /{prefix} blocks out of {block}")


def _find_in_map(args: Any, scope: Scope) -> Any:
    name, top, second = (evaluate(a, scope) for a in args)
    try:
        return scope.template.mappings[name][str(top)][str(second)]
    except KeyError:
        raise EvaluationError(f"Template error: Unable to get mapping for {name}::{top}::{second}") from None


def _if(args: Any, scope: Scope) -> Any:
    name, when_true, when_false = args
    if name not in scope.conditions:
        raise TemplateError(f"Template format error: Unresolved condition dependency {name} in Fn::If")
    return evaluate(when_true if scope.conditions[name] else when_false, scope)


_FUNCTIONS: dict[str, Callable[[Any, Scope], Any]] = {
    "Ref": lambda a, s: _ref(a, s),
    "Fn::GetAtt": _get_att,
    "Fn::Sub": _sub,
    "Fn::Join": _join,
    "Fn::Select": _select,
    "Fn::Split": lambda a, s: str(evaluate(a[1], s)).split(a[0]),
    "Fn::If": _if,
    "Fn::Base64": lambda a, s: base64.b64encode(str(evaluate(a, s)).encode()).decode(),
    "Fn::Cidr": _cidr,
    "Fn::GetAZs": lambda a, s: [f"{s.region}{z}" for z in "abc"],
    "Fn::FindInMap": _find_in_map,
    "Fn::ImportValue": lambda a, s: s.import_value(str(evaluate(a, s))),
}
