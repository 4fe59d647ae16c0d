"""EC2 instance types RStudio may run on (launch_type ec2), and how much of each an ECS task can reserve.

Table as of 2026-12-01, from the AWS "Amazon EC2 instance types" specifications (docs.aws.amazon.com/ec2/latest/
instancetypes/gp.html for m6i/m7i, co.html for c6i/c7i, mo.html for r6i/r7i): every size of these families has
2 GiB (c), 4 GiB (m) or 8 GiB (r) of memory per vCPU, which is how the table is written. Metal and flex sizes are
left out: they are not offered in every region, and a config naming one gets a clear error instead of a guess.

What a task may reserve is less than the advertised memory ("Reserving Amazon ECS Linux container instance memory",
ECS developer guide): the agent registers what the kernel reports, which is the installed memory minus platform and
kernel overhead (the guide's m4.large registers 7985 of 8192 MiB, 2.5 % less), minus ECS_RESERVED_MEMORY. The user
data (generator/instance/capacity.py) leaves ECS_RESERVED_MEMORY at the agent's default of 0. The guide gives no
formula for the overhead, so the stricter reading is modelled: twice its example, 5 %. CPU is registered in full
(1024 units per vCPU).
"""

from __future__ import annotations

from typing import NamedTuple

TABLE_DATE = "2026-12-01"
KERNEL_OVERHEAD = 0.05
ECS_RESERVED_MEMORY_MIB = 0

_GIB_PER_VCPU = {"c": 2, "m": 4, "r": 8}
_FAMILIES = {"c6i": "c", "c7i": "c", "m6i": "m", "m7i": "m", "r6i": "r", "r7i": "r"}
_VCPUS = {"large": 2, "xlarge": 4, "2xlarge": 8, "4xlarge": 16, "8xlarge": 32, "12xlarge": 48, "16xlarge": 64,
          "24xlarge": 96}  # fmt: skip
# The 6th generation's largest size is 32xlarge; the 7th has no 32xlarge but a 48xlarge.
_SIZES = {family: {**_VCPUS, **({"48xlarge": 192} if family.endswith("7i") else {"32xlarge": 128})}
          for family in _FAMILIES}  # fmt: skip


class InstanceType(NamedTuple):
    vcpus: int
    memory_mib: int
    """As advertised (GiB x 1024)."""

    @property
    def task_cpu(self) -> int:
        """CPU units one task may reserve."""
        return self.vcpus * 1024

    @property
    def task_memory(self) -> int:
        """MiB one task may reserve, after the kernel's share and the agent's reservation."""
        return int(self.memory_mib * (1 - KERNEL_OVERHEAD)) - ECS_RESERVED_MEMORY_MIB


INSTANCE_TYPES: dict[str, InstanceType] = {
    f"{family}.{size}": InstanceType(vcpus, vcpus * _GIB_PER_VCPU[kind] * 1024)
    for family, kind in _FAMILIES.items() for size, vcpus in _SIZES[family].items()
}  # fmt: skip
