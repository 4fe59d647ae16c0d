"""The rules that make a stack fail on AWS although its template is valid, each with its source, and the world-wide
bookkeeping they need (exports, quotas, deletion refusals)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from stacksets.awsmodel.intrinsics import Template
from stacksets.awsmodel.resources import digest

if TYPE_CHECKING:
    from stacksets.awsmodel.engine import Registry, Resource, Stack
    from stacksets.awsmodel.engine_run import Run

USER_GUIDE = "https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/"
RULES: list[tuple[str, str, str]] = [
    ("order", "An EIP (Domain vpc), NAT gateway, route to an internet gateway or internet-facing ELBv2 load balancer "
     "must depend (transitively) on the template's VPCGatewayAttachment; strict mode fails it, otherwise a warning",
     USER_GUIDE + "aws-attribute-dependson.html (\"When a DependsOn attribute is required\"); "
     "aws-cloudformation/aws-cloudformation-templates#75 (the race, in a maintainer's words)"),
    ("names", "A physical name is unique per account and Region (S3 buckets per partition, IAM names per account); "
     "a second resource with a name in use fails with the service's AlreadyExists wording",
     "S3 user guide \"Bucket naming rules\"; IAM API CreateRole EntityAlreadyExists; Secrets Manager CreateSecret "
     "ResourceExistsException; ECR CreateRepository RepositoryAlreadyExistsException; CloudFormation registry "
     "handler contract (AlreadyExists)"),
    ("retain", "DeletionPolicy Retain keeps the resource and its name on deletion and on the rollback of a failed "
     "create; RetainExceptOnCreate deletes it on that rollback; UpdateReplacePolicy does the same for replacements",
     USER_GUIDE + "aws-attribute-deletionpolicy.html; aws-attribute-updatereplacepolicy.html"),
    ("deletion-protection", "An ELBv2 load balancer with deletion_protection.enabled=true cannot be deleted: "
     "that resource ends DELETE_FAILED, the other deletions proceed, the stack ends DELETE_FAILED",
     "Elastic Load Balancing API reference DeleteLoadBalancer (OperationNotPermitted); ELB user guide "
     "\"Deletion protection\""),
    ("lambda-concurrency", "Reserved concurrency of all functions in an account and Region must leave at least "
     "min(100, quota) unreserved",
     "https://docs.aws.amazon.com/lambda/latest/dg/configuration-concurrency.html; message as seen in "
     "awslabs/fhir-works-on-aws-deployment#691"),
    ("logs-policies", "At most quota(logs_resource_policies) (10) CloudWatch Logs resource policies per account and "
     "Region: the next fails \"Resource limit exceeded.\"",
     "CloudWatch Logs quotas (https://docs.aws.amazon.com/AmazonCloudWatch/latest/logs/cloudwatch_limits_cwl.html); "
     "API PutResourcePolicy LimitExceededException"),
    ("acm", "A DNS-validated certificate completes only when every name's zone is delegated",
     "https://docs.aws.amazon.com/acm/latest/userguide/dns-validation.html"),
    ("custom", "A custom resource's handler gets Create, Update when its properties change, and Delete when it is "
     "deleted; its Data becomes the resource's attributes; FAILED fails the resource with the handler's reason (a "
     "Delete: DELETE_FAILED)", USER_GUIDE + "crpg-ref-requesttypes.html; " + USER_GUIDE + "crpg-ref-responses.html; "
     + USER_GUIDE + "crpg-ref-requesttypes-delete.html"),
    ("exports", "Fn::ImportValue needs an export in the same account and Region; an export in use cannot be "
     "deleted or changed; export names are unique per account and Region",
     USER_GUIDE + "using-cfn-stack-exports.html"),
    ("rollback", "A failed create rolls back (ROLLBACK_COMPLETE); a failed update restores the previous resources "
     "and outputs (UPDATE_ROLLBACK_COMPLETE)", USER_GUIDE + "using-cfn-describing-stacks.html (stack status codes)"),
    ("vpc-quotas", "At most quota(vpcs_per_region) (5) VPCs per account and Region, the account's default VPC "
     "counted, and quota(elastic_ips_per_region) (5) Elastic IPs: the next fails VpcLimitExceeded / "
     "AddressLimitExceeded", "https://docs.aws.amazon.com/general/latest/gr/vpc-service.html (VPCs per Region); "
     "EC2 user guide \"Elastic IP address quota\"; EC2 API error codes VpcLimitExceeded, AddressLimitExceeded"),
    ("asg-protection", "An ECS service on a capacity provider puts one instance per service (at most MaxSize) into "
     "the provider's Auto Scaling group, protected from scale-in when the group has NewInstancesProtectedFromScaleIn "
     "or the provider ManagedTerminationProtection ENABLED; only SetInstanceProtection lifts it. Deleting a group "
     "while an instance is protected fails that resource (DELETE_FAILED)",
     "aws/containers-roadmap#2862 (the flags ECS set \"are never removed\" when the capacity provider goes, which "
     "\"blocks ASG deletion\"); aws-samples/aws-fault-injection-simulator-workshop#114 (the group's activity, quoted "
     "as the reason); aws/aws-cdk#18179, #14732 (CloudFormation does not force-delete the group)"),
    ("vended-logs", "The first WAF logging configuration to a CloudWatch Logs log group in an account and Region takes "
     "one resource-policy slot: AWS adds the log-delivery resource policy, shared by later log groups",
     "https://docs.aws.amazon.com/AmazonCloudWatch/latest/logs/AWS-logs-infrastructure-CWL.html (\"AWS creates or "
     "changes the resource policies\"); the 5,120-character policy that later log groups share"),
    ("waf-log-destination", "A WAF logging configuration's CloudWatch Logs destination must be an existing log group",
     "WAFv2 API reference PutLoggingConfiguration (errors WAFNonexistentItemException, WAFInvalidParameterException); "
     "WAF developer guide \"Sending web ACL traffic logs to an Amazon CloudWatch Logs log group\""),
]

DEFAULT_QUOTAS = {"lambda_concurrent_executions": 1000, "logs_resource_policies": 10, "vpcs_per_region": 5,
                  "elastic_ips_per_region": 5}
DEFAULT_VPCS = 1  # every Region of an account starts with its default VPC
LAMBDA_UNRESERVED_FLOOR = 100
ATTACHMENT = "AWS::EC2::VPCGatewayAttachment"
GROUP = "AWS::AutoScaling::AutoScalingGroup"
# The group's scaling activity when CloudFormation sets it to zero (aws-samples/aws-fault-injection-simulator-workshop
# #114); CloudFormation waits on it until its own timeout, the model fails the group at once.
PROTECTED_GROUP = "Could not scale to desired capacity because all remaining instances are protected from scale-in."


def partition(region: str) -> str:
    return "aws-cn" if region.startswith("cn-") else "aws-us-gov" if region.startswith("us-gov-") else "aws"


def url_suffix(region: str) -> str:
    return "amazonaws.com.cn" if region.startswith("cn-") else "amazonaws.com"


# --- rule "order" ------------------------------------------------------------------------------------------------

def _needs_attachment(template: Template, logical_id: str, igws: set[str]) -> bool:
    declaration = template.resources[logical_id]
    kind, props = declaration["Type"], declaration.get("Properties") or {}
    if kind == "AWS::EC2::EIP":
        return props.get("Domain") == "vpc"
    if kind == "AWS::EC2::NatGateway":
        return props.get("ConnectivityType", "public") == "public"
    if kind == "AWS::EC2::Route":
        gateway = props.get("GatewayId")
        return isinstance(gateway, dict) and gateway.get("Ref") in igws
    if kind == "AWS::ElasticLoadBalancingV2::LoadBalancer":
        return props.get("Scheme") != "internal"  # internet-facing is the default (ELB API CreateLoadBalancer)
    return False


def order_violations(template: Template, included: list[str]) -> list[str]:
    """Resources that CloudFormation may start before the internet gateway is attached."""
    chosen = set(included)
    if not any(template.resources[lid]["Type"] == ATTACHMENT for lid in chosen):
        return []
    igws = {lid for lid in chosen if template.resources[lid]["Type"] == "AWS::EC2::InternetGateway"}
    closure: dict[str, set[str]] = {}
    for lid in template.order:
        closure[lid] = set().union(*({d} | closure[d] for d in template.dependencies[lid])) if \
            template.dependencies[lid] else set()
    return [lid for lid in included if _needs_attachment(template, lid, igws)
            and not any(template.resources[d]["Type"] == ATTACHMENT for d in closure[lid])]


def order_failure(stack: Stack, resource_type: str) -> str:
    vpc = next((r.physical_id for r in stack.resources.values() if r.resource_type == "AWS::EC2::VPC"), "vpc-?")
    if resource_type == "AWS::ElasticLoadBalancingV2::LoadBalancer":
        return f"VPC {vpc} has no internet gateway (Service: ElasticLoadBalancingV2; Status Code: 400; " \
               "Error Code: InvalidSubnet)"
    return f"Network {vpc} is not attached to any internet gateway (Service: Ec2; Status Code: 400; " \
           "Error Code: Gateway.NotAttached)"


# --- rules checked when a resource is created or updated ------------------------------------------------------

def refusal(run: Run, logical_id: str, resource_type: str, props: dict[str, Any]) -> str | None:
    stack, env = run.stack, run.engine.env
    if env.strict_creation_order and logical_id in run.violations:
        return order_failure(stack, resource_type)
    if resource_type == "AWS::Lambda::Function" and "ReservedConcurrentExecutions" in props:
        return _lambda_refusal(run, logical_id, int(props["ReservedConcurrentExecutions"]))
    new = logical_id not in stack.resources
    if new and (resource_type == "AWS::Logs::ResourcePolicy" or _first_vended_logs(run, resource_type, props)):
        if _logs_policies(run) >= env.quota(stack.account, "logs_resource_policies"):
            return "Resource limit exceeded. (Service: CloudWatchLogs; Status Code: 400; " \
                   "Error Code: LimitExceededException)"
    if resource_type == "AWS::WAFv2::LoggingConfiguration":
        missing = _missing_log_groups(run, props)
        if missing:
            return f"The referenced item does not exist: log group {missing[0]} (Service: Wafv2; Status Code: 400; " \
                   "Error Code: WAFNonexistentItemException)"
    if new and resource_type == "AWS::EC2::VPC":
        if DEFAULT_VPCS + _count(run, resource_type) >= env.quota(stack.account, "vpcs_per_region"):
            return "The maximum number of VPCs has been reached. (Service: Ec2; Status Code: 400; " \
                   "Error Code: VpcLimitExceeded)"
    if new and resource_type == "AWS::EC2::EIP":
        if _count(run, resource_type) >= env.quota(stack.account, "elastic_ips_per_region"):
            return "The maximum number of addresses has been reached. (Service: Ec2; Status Code: 400; " \
                   "Error Code: AddressLimitExceeded)"
    if resource_type == "AWS::CertificateManager::Certificate" and props.get("ValidationMethod") == "DNS":
        for domain in [props.get("DomainName", ""), *props.get("SubjectAlternativeNames", [])]:
            if not env.dns_delegated(str(domain).lstrip("*.")):
                return f"DNS validation of {domain} did not complete: ACM cannot resolve its validation CNAME " \
                       "because the domain's zone is not delegated to the hosted zone that holds the record"
    return None


def _count(run: Run, resource_type: str) -> int:
    stack = run.stack
    return sum(1 for _, r in run.engine.registry.resources(stack.account, stack.region)
               if r.resource_type == resource_type)  # fmt: skip


def _missing_log_groups(run: Run, props: dict[str, Any]) -> list[str]:
    stack = run.stack
    groups = {str(r.name or r.physical_id) for _, r in run.engine.registry.resources(stack.account, stack.region)
              if r.resource_type == "AWS::Logs::LogGroup"}  # fmt: skip
    wanted = [str(d).split(":log-group:", 1)[1].removesuffix(":*") for d in props.get("LogDestinationConfigs", [])
              if ":log-group:" in str(d)]  # fmt: skip
    return [name for name in wanted if name not in groups]


def _sends_to_logs(props: dict[str, Any]) -> bool:
    return any(":logs:" in str(destination) for destination in props.get("LogDestinationConfigs", []))


def _vended_logs_in_use(run: Run) -> bool:
    stack = run.stack
    return any(r.resource_type == "AWS::WAFv2::LoggingConfiguration" and _sends_to_logs(r.properties)
               for _, r in run.engine.registry.resources(stack.account, stack.region))  # fmt: skip


def _first_vended_logs(run: Run, resource_type: str, props: dict[str, Any]) -> bool:
    return resource_type == "AWS::WAFv2::LoggingConfiguration" and _sends_to_logs(props) and \
        not _vended_logs_in_use(run)  # fmt: skip


def _logs_policies(run: Run) -> int:
    """The account's resource policies: its own, and the one log delivery adds for vended logs."""
    return _count(run, "AWS::Logs::ResourcePolicy") + (1 if _vended_logs_in_use(run) else 0)


def _lambda_refusal(run: Run, logical_id: str, wanted: int) -> str | None:
    stack = run.stack
    quota = run.engine.env.quota(stack.account, "lambda_concurrent_executions")
    reserved = sum(int(r.properties.get("ReservedConcurrentExecutions", 0))
                   for owner, r in run.engine.registry.resources(stack.account, stack.region)
                   if r.resource_type == "AWS::Lambda::Function"
                   and not (owner == stack.stack_id and r.logical_id == logical_id))
    floor = min(LAMBDA_UNRESERVED_FLOOR, quota)
    if quota - reserved - wanted < floor:
        return "Specified ReservedConcurrentExecutions for function decreases account's " \
               f"UnreservedConcurrentExecution below its minimum value of [{floor}]."
    return None


def delete_refusal(registry: Registry, stack: Stack, resource: Resource) -> str | None:
    if resource.resource_type == GROUP:
        return _protected_group(registry, stack, resource)
    if resource.resource_type != "AWS::ElasticLoadBalancingV2::LoadBalancer":
        return None
    for attribute in resource.properties.get("LoadBalancerAttributes", []):
        if attribute.get("Key") == "deletion_protection.enabled" and str(attribute.get("Value")).lower() == "true":
            return f"Load balancer '{resource.physical_id}' cannot be deleted because deletion protection is " \
                   "enabled (Service: ElasticLoadBalancingV2; Status Code: 400; Error Code: OperationNotPermitted)"
    return None


def refuse_type_changes(stack: Stack, template: Template) -> None:
    from stacksets.awsmodel.engine import StackRefused

    changed = sorted(lid for lid, r in stack.resources.items()
                     if lid in template.resources and template.resources[lid]["Type"] != r.resource_type)
    if changed:
        raise StackRefused("ValidationError", "Update of resource type is not permitted. The new template modifies "
                           f"resource type of the following resources: [{', '.join(changed)}]")


# --- rule "exports" ----------------------------------------------------------------------------------------------

def _importers(registry: Registry, stack: Stack, name: str) -> list[str]:
    ids = registry.imports.get((stack.account, stack.region, name), set())
    return sorted(registry.stacks[i].name for i in ids if i in registry.stacks and i != stack.stack_id)


def exports_in_use(registry: Registry, stack: Stack, keep: dict[str, str] | None = None) -> str:
    """Why these exports cannot go away or change (empty when they can); `keep` is what an update leaves."""
    for name, value in sorted(stack.exports.items()):
        if keep is not None and keep.get(name) == value:
            continue
        users = _importers(registry, stack, name)
        if users:
            verb = "deleted" if keep is None or name not in keep else "updated"
            return f"Export {name} cannot be {verb} as it is in use by {', '.join(users)}"
    return ""


def withdraw_exports(registry: Registry, stack: Stack) -> None:
    for name in stack.exports:
        if registry.exports.get((stack.account, stack.region, name), ("", ""))[1] == stack.stack_id:
            del registry.exports[(stack.account, stack.region, name)]
    for importers in registry.imports.values():
        importers.discard(stack.stack_id)


def republish_exports(registry: Registry, stack: Stack) -> None:
    for key, (_, owner) in list(registry.exports.items()):
        if owner == stack.stack_id:
            del registry.exports[key]
    for name, value in stack.exports.items():
        registry.exports[(stack.account, stack.region, name)] = (value, stack.stack_id)


# --- rule "asg-protection" ---------------------------------------------------------------------------------------

@dataclass
class GroupInstance:
    """An EC2 instance an Auto Scaling group launched for the tasks of one ECS service."""

    instance_id: str
    zone: str
    protected: bool
    service: str  # "<stack id>|<logical id>" of the service whose tasks it runs


def group_key(account: str, region: str, name_or_arn: str) -> tuple[str, str, str]:
    # AutoScalingGroupProvider.AutoScalingGroupArn takes the group's name or ARN (ECS API reference)
    return account, region, str(name_or_arn).rsplit("autoScalingGroupName/", 1)[-1]


def place_tasks(run: Run, logical_id: str, resource: Resource) -> None:
    """A new ECS service on an EC2 capacity provider: its group launches an instance for its tasks, which managed
    termination protection (or the group's NewInstancesProtectedFromScaleIn) protects from scale-in."""
    if resource.resource_type != "AWS::ECS::Service" or int(resource.properties.get("DesiredCount", 1)) < 1:
        return
    stack, registry = run.stack, run.engine.registry
    by_id = {r.physical_id: r for _, r in registry.resources(stack.account, stack.region)}
    service = f"{stack.stack_id}|{logical_id}"
    for item in resource.properties.get("CapacityProviderStrategy", []):
        provider = by_id.get(str(item.get("CapacityProvider")))
        if provider is None or provider.resource_type != "AWS::ECS::CapacityProvider":
            continue  # FARGATE, FARGATE_SPOT or a provider the model does not know
        settings = provider.properties.get("AutoScalingGroupProvider") or {}
        key = group_key(stack.account, stack.region, settings.get("AutoScalingGroupArn", ""))
        group = by_id.get(key[2])
        instances = registry.instances.setdefault(key, [])
        if group is None or any(i.service == service for i in instances) or \
                len(instances) >= int(group.properties.get("MaxSize", 0)):  # fmt: skip
            continue
        protected = str(group.properties.get("NewInstancesProtectedFromScaleIn", "false")).lower() == "true" or \
            settings.get("ManagedTerminationProtection") == "ENABLED"  # fmt: skip
        zone = _zone(by_id, group, len(instances)) or f"{stack.region}a"
        instance_id = "i-" + digest(service, str(len(instances)))[:17]
        instances.append(GroupInstance(instance_id, zone, protected, service))
        return


def _zone(by_id: dict[str, Resource], group: Resource, index: int) -> str | None:
    subnets = [by_id.get(str(s)) for s in group.properties.get("VPCZoneIdentifier", [])]
    zones = [str(s.attributes.get("AvailabilityZone")) for s in subnets if s is not None]
    return zones[index % len(zones)] if zones else None


def _protected_group(registry: Registry, stack: Stack, resource: Resource) -> str | None:
    instances = registry.instances.get(group_key(stack.account, stack.region, resource.physical_id), [])
    return PROTECTED_GROUP if any(i.protected for i in instances) else None


def terminate_instances(registry: Registry, stack: Stack, resource: Resource) -> None:
    """A deleted group terminated its (unprotected) instances on the way."""
    if resource.resource_type == GROUP:
        registry.instances.pop(group_key(stack.account, stack.region, resource.physical_id), None)
