"""Builders of the `rstudio-<instance>` StackSet, one module per resource group.

generator/stacks/instance.py assembles them in reading order; each module's `add_<group>()` returns what it made so
the next group can wire to it.
"""
