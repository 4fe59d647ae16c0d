"""The ECS cluster: Container Insights on, and ECS Exec sessions encrypted and logged (it is the admin path)."""

from __future__ import annotations

from typing import NamedTuple

from troposphere import Parameter, Ref, Template
from troposphere.ecs import (
    Cluster,
    ClusterConfiguration,
    ClusterSetting,
    ExecuteCommandConfiguration,
    ExecuteCommandLogConfiguration,
)
from troposphere.logs import LogGroup

from generator.instance.tasks import add_log_group
from generator.naming import cluster_name


class ClusterParts(NamedTuple):
    cluster: Cluster
    exec_log_group: LogGroup


def add_cluster(t: Template, instance: str, key: Parameter, retention_days: int) -> ClusterParts:
    exec_logs = add_log_group(t, "ExecLogGroup", f"/rstudio/{instance}/ecs-exec", key, retention_days)
    cluster = t.add_resource(
        Cluster(
            "Cluster",
            ClusterName=cluster_name(instance),
            ClusterSettings=[ClusterSetting(Name="containerInsights", Value="enabled")],
            Configuration=ClusterConfiguration(
                ExecuteCommandConfiguration=ExecuteCommandConfiguration(
                    KmsKeyId=Ref(key),
                    Logging="OVERRIDE",
                    LogConfiguration=ExecuteCommandLogConfiguration(
                        CloudWatchEncryptionEnabled=True, CloudWatchLogGroupName=Ref(exec_logs)
                    ),
                )
            ),
        )
    )
    return ClusterParts(cluster, exec_logs)
