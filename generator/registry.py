"""Which StackSets a configuration implies, and the function that builds each one's template."""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial
from typing import Callable

from troposphere import Template

from generator.stacks import (
    bootstrap,
    central,
    data,
    delegation,
    instance,
    instance_data,
    logs,
    storage,
    zone,
)
from stacksets import naming
from stacksets.config import Config

Builder = Callable[[], Template]


def builders(cfg: Config, image_tags: Mapping[str, str]) -> dict[str, Builder]:
    """StackSet name -> template builder, one entry per StackSet, in a stable order."""
    result: dict[str, Builder] = {
        naming.BOOTSTRAP: partial(bootstrap.build, cfg),
        naming.CENTRAL: partial(central.build, cfg),
        naming.DATA: partial(data.build, cfg),
        naming.LOGS: logs.build,
    }
    for name in sorted(cfg.instances):
        result[naming.zone_stackset(name)] = partial(zone.build, cfg, name)
        result[naming.delegation_stackset(name)] = partial(delegation.build, cfg, name)
        result[naming.instance_data_stackset(name)] = partial(instance_data.build, cfg, name)
        result[naming.storage_stackset(name)] = partial(storage.build, cfg, name)
        result[naming.instance_stackset(name)] = partial(instance.build, cfg, name, image_tags)
    return result
