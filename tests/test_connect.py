"""`deploy.py connect` against the sandbox, as an operator runs it (through `deploy.main`), and the AWS model's ECS
and EC2 reads it stands on (rules ecs-list-tasks, ecs-describe-tasks, ec2-network-interfaces of docs/aws_model.md).

One sandbox rollout of the example config (dev: a shared server and Shiny; prod: per-user servers on EC2, Shiny and
a bastion) is deployed once per module; each test runs on its own copy of that rehearsal.
"""

from __future__ import annotations

import ipaddress
import shlex
import shutil
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml
from botocore.exceptions import ClientError

import deploy
from generator.instance.servers import rstudio_servers
from generator.instance.ssh import ADMIN_USER
from stacksets.awsmodel.model import AwsModel
from stacksets.awsmodel.services import Caller
from stacksets.config import Config
from stacksets.naming import BOOTSTRAP, DEPLOY_READER_ROLE, instance_stackset
from tests.conftest import EXAMPLE_CONFIG, ROOT, TEMPLATES

pytestmark = pytest.mark.slow
DEV, PROD, REGION = "555555555555", "666666666666", "eu-west-1"
STATE = Path(".rstudio-fargate") / "sandbox"
CONNECT_ACTIONS = {"ecs:ListTasks", "ecs:DescribeTasks", "ec2:DescribeNetworkInterfaces"}


@pytest.fixture(scope="module")
def deployed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The rehearsal after one `deploy --sandbox --yes` of the example config."""
    root = tmp_path_factory.mktemp("deployed")
    shutil.copy(EXAMPLE_CONFIG, root / "config.yaml")
    shutil.copytree(TEMPLATES, root / "templates")
    shutil.copytree(ROOT / "container", root / "container")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)
        assert deploy.main(["deploy", "--sandbox", "--yes"]) == 0
    yield root / STATE


@pytest.fixture
def rehearsal(deployed: Path, workdir: Path) -> Path:
    """This test's own copy of the deployed rehearsal, in its working directory."""
    shutil.copytree(deployed, workdir / STATE)
    return workdir


def model_of(workdir: Path) -> AwsModel:
    return AwsModel.load(workdir / STATE / "aws.pickle")


def connect(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = deploy.main(["connect", *args, "--sandbox"])
    out, err = capsys.readouterr()
    return code, out.strip(), err


def options(command: str) -> dict[str, str]:
    """The command's options with a value (--interactive, the one flag, stands alone)."""
    words = [w for w in shlex.split(command) if w != "--interactive"]
    return {word: words[i + 1] for i, word in enumerate(words[:-1]) if word.startswith("--")}


def compute_stack(model: AwsModel, instance: str) -> Any:
    (stack,) = [s for s in model.world.engine.registry.stacks.values() if s.stackset == instance_stackset(instance)]
    return stack


def tasks_of_service(model: AwsModel, instance: str, account: str, logical_id: str) -> list[Any]:
    """The model's tasks of one of the compute stack's services, found by the service's logical id (not by the
    family connect looks for)."""
    service = compute_stack(model, instance).resources[logical_id]
    tasks = model.world.ecs.tasks(Caller(account, REGION))
    return [t for t in tasks if t.service == service.attributes["Name"]]


# --- the commands it prints --------------------------------------------------------------------------------------


def test_shared_mode_prints_ecs_exec_into_the_one_rstudio_server(rehearsal: Path, cfg: Config, capsys) -> None:
    code, out, err = connect(capsys, "dev")
    assert code == 0, err
    assert out.startswith("aws ecs execute-command ") and out.endswith("--interactive --command /bin/bash")
    (server,) = rstudio_servers(cfg, "dev")
    (task,) = tasks_of_service(model_of(rehearsal), "dev", DEV, server.id("Service"))
    assert options(out) == {"--region": REGION, "--cluster": "rstudio-dev", "--task": task.arn,
                            "--container": "rstudio", "--command": "/bin/bash"}  # fmt: skip
    # the command needs the instance account's credentials, which the admin account's profile are not
    assert f"credentials of account {DEV}" in err and "ecs:ExecuteCommand" in err and "Session Manager" in err
    assert connect(capsys, "dev", "rstudio")[1] == out


def test_per_user_mode_prints_ecs_exec_into_each_users_own_server(rehearsal: Path, cfg: Config, capsys) -> None:
    model = model_of(rehearsal)
    seen = set()
    for server in rstudio_servers(cfg, "prod"):
        code, out, err = connect(capsys, "prod", server.key)
        assert code == 0, err
        (task,) = tasks_of_service(model, "prod", PROD, server.id("Service"))
        assert options(out)["--task"] == task.arn and options(out)["--cluster"] == "rstudio-prod"
        assert options(out)["--container"] == "rstudio"
        seen.add(task.arn)
        # the server's own name part ("rstudio-alice", as in its log group) names the same server
        assert connect(capsys, "prod", server.name)[1] == out
    assert len(seen) == len(cfg.instances["prod"].users) == 3


def test_shiny_prints_ecs_exec_into_one_of_its_running_tasks(rehearsal: Path, cfg: Config, capsys) -> None:
    code, out, err = connect(capsys, "dev", "shiny")
    assert code == 0, err
    tasks = tasks_of_service(model_of(rehearsal), "dev", DEV, "ShinyService")
    # no DesiredCount in the template: the scalable target's minimum is what runs
    assert len(tasks) == cfg.instances["dev"].shiny.autoscaling.min == 2
    assert options(out)["--task"] == min(t.arn for t in tasks) and options(out)["--container"] == "shiny"
    assert f"{len(tasks)} tasks of rstudio-dev-shiny are running" in err and max(t.arn for t in tasks) in err


def test_ssh_jumps_through_the_bastions_public_ip_to_the_tasks_private_ip(rehearsal: Path, cfg: Config,
                                                                          capsys) -> None:  # fmt: skip
    code, out, err = connect(capsys, "prod", "bob", "--ssh")
    assert code == 0, err
    model = model_of(rehearsal)
    (bastion,) = tasks_of_service(model, "prod", PROD, "BastionService")
    server = next(s for s in rstudio_servers(cfg, "prod") if s.key == "bob")
    (task,) = tasks_of_service(model, "prod", PROD, server.id("Service"))
    assert bastion.public_ip and task.public_ip is None
    assert out == f"ssh -J {ADMIN_USER}@{bastion.public_ip} {ADMIN_USER}@{task.private_ip}"
    # the private IP is an address of one of the server's (private) subnets, past the four AWS keeps
    stack = compute_stack(model, "prod")
    by_id = {r.physical_id: r for r in stack.resources.values()}
    subnets = stack.resources[server.id("Service")].properties["NetworkConfiguration"]["AwsvpcConfiguration"]
    blocks = [ipaddress.ip_network(by_id[s].properties["CidrBlock"]) for s in subnets["Subnets"]]
    address = ipaddress.ip_address(task.private_ip)
    assert any(address in b and int(address) - int(b.network_address) >= 4 for b in blocks)
    assert "rstudio/prod/bastion/ssh-public-key" in err and "allowed_cidrs" in err
    code, out, err = connect(capsys, "prod", "shiny", "--ssh")
    assert code == 0 and out.startswith(f"ssh -J {ADMIN_USER}@{bastion.public_ip} {ADMIN_USER}@10.30."), err


# --- what stops it -------------------------------------------------------------------------------------------------


def test_unknown_instance_and_server_name_what_is_known(workdir: Path, capsys) -> None:
    code, _, err = connect(capsys, "staging")
    assert code == 2 and "unknown instance 'staging': the config's instances are dev, prod" in err
    code, _, err = connect(capsys, "prod", "zed")
    assert code == 2 and "instance prod has no server 'zed': its servers are alice, bob, chen, shiny" in err
    code, _, err = connect(capsys, "prod")
    assert code == 2 and "one RStudio server per user: name one of alice, bob, chen, shiny" in err
    code, _, err = connect(capsys, "dev", "alice")
    assert code == 2 and "its servers are rstudio, shiny" in err
    # nothing was read: these are config mistakes, found before the sandbox starts
    assert not (workdir / STATE).exists()


def test_shiny_when_disabled_and_ssh_without_a_bastion_say_which_key(workdir: Path, capsys) -> None:
    data = yaml.safe_load((workdir / "config.yaml").read_text())
    data["instances"]["dev"]["shiny"] = {"enabled": False}
    (workdir / "config.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    code, _, err = connect(capsys, "dev", "shiny")
    assert code == 2 and "instances.dev.shiny.enabled is false" in err and "connect to one of rstudio" in err
    code, _, err = connect(capsys, "dev", "--ssh")
    assert code == 2 and "instances.dev.bastion.enabled is false" in err and "leave out --ssh" in err


def test_a_server_scaled_to_zero_has_no_running_task(rehearsal: Path, cfg: Config, capsys) -> None:
    model = model_of(rehearsal)
    server = next(s for s in rstudio_servers(cfg, "prod") if s.key == "chen")
    compute_stack(model, "prod").resources[server.id("Service")].properties["DesiredCount"] = 0
    model.save(rehearsal / STATE / "aws.pickle")
    code, out, err = connect(capsys, "prod", "chen")
    assert code == 2 and not out
    assert "no running task of chen on instance prod (family rstudio-prod-rstudio-chen in cluster rstudio-prod" in err
    assert "scaled to 0" in err
    assert connect(capsys, "prod", "alice")[0] == 0  # the other servers still run


def test_an_instance_not_deployed_yet_says_to_deploy(workdir: Path, capsys) -> None:
    code, _, err = connect(capsys, "dev")
    assert code == 2 and "rstudio-deploy-reader" in err and "is the rstudio-bootstrap StackSet deployed" in err
    assert deploy.main(["deploy", "--sandbox", "--yes", "--only", BOOTSTRAP]) == 0
    code, _, err = connect(capsys, "dev")
    assert code == 2
    assert f"instance dev is not deployed: there is no ECS cluster rstudio-dev in account {DEV} ({REGION})" in err


# --- the reader role grants exactly what it reads ------------------------------------------------------------------


def reader_policy(workdir: Path) -> list[dict[str, Any]]:
    """The reader role's statements in the rendered bootstrap template (this test's copy of templates/)."""
    from stacksets.awsmodel.templates import parsed_template

    template = parsed_template((workdir / "templates" / f"{BOOTSTRAP}.yaml").read_text(encoding="utf-8"))
    (role,) = [r for r in template["Resources"].values() if r["Type"] == "AWS::IAM::Role"]
    return [s for p in role["Properties"]["Policies"] for s in p["PolicyDocument"]["Statement"]]


def test_the_reader_role_allows_exactly_the_calls_connect_makes(rehearsal: Path, capsys,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    made: set[str] = set()
    handle = AwsModel.handle

    def recording(self: AwsModel, service: str, operation: str, *args: Any) -> dict[str, Any]:
        answer = handle(self, service, operation, *args)
        if self.log[-1].role == DEPLOY_READER_ROLE:
            made.add(f"{service}:{operation}")
        return answer

    monkeypatch.setattr(AwsModel, "handle", recording)
    for args in (["dev"], ["dev", "shiny"], ["prod", "alice", "--ssh"]):
        assert connect(capsys, *args)[0] == 0
    assert made == CONNECT_ACTIONS
    granted = {a for s in reader_policy(rehearsal) for a in s["Action"] if a.split(":")[0] in ("ecs", "ec2")}
    assert granted == made
    monkeypatch.setattr(AwsModel, "handle", handle)

    # The model checks the deployed role's policy on every call: without any one of the rights, connect stops
    kept = (rehearsal / STATE / "aws.pickle").read_bytes()
    for action in sorted(CONNECT_ACTIONS):
        model = model_of(rehearsal)
        (stack,) = [s for s in model.world.engine.registry.stacks.values()
                    if s.stackset == BOOTSTRAP and s.account == PROD]  # fmt: skip
        assert f"- {action}\n" in stack.template_body
        stack.template_body = stack.template_body.replace(f"- {action}\n", "- ecs:ListTagsForResource\n")
        model.save(rehearsal / STATE / "aws.pickle")
        code, out, err = connect(capsys, "prod", "alice", "--ssh")
        assert code == 2 and not out, action
        assert f"{DEPLOY_READER_ROLE} in account {PROD} may not read" in err and f"--only {BOOTSTRAP}" in err
        (rehearsal / STATE / "aws.pickle").write_bytes(kept)


# --- the model's ECS and EC2 reads -----------------------------------------------------------------------------


def reader(model: AwsModel, service: str, account: str = PROD) -> Any:
    return model.client_as(account, REGION, DEPLOY_READER_ROLE, service)


def error_code(raised: pytest.ExceptionInfo[ClientError]) -> str:
    return raised.value.response["Error"]["Code"]


def test_ecs_list_tasks_pages_filters_and_knows_its_clusters(rehearsal: Path, cfg: Config) -> None:
    model = model_of(rehearsal)
    ecs = reader(model, "ecs")
    every = set(ecs.list_tasks(cluster="rstudio-prod")["taskArns"])
    # three user servers, the bastion and Shiny's minimum
    assert len(every) == len(cfg.instances["prod"].users) + 1 + cfg.instances["prod"].shiny.autoscaling.min
    pages, token = [], None
    while True:
        page = ecs.list_tasks(cluster="rstudio-prod", maxResults=2, **({"nextToken": token} if token else {}))
        pages.append(page["taskArns"])
        token = page.get("nextToken")
        if not token:
            break
    assert all(len(p) <= 2 for p in pages) and {a for p in pages for a in p} == every
    assert ecs.list_tasks(cluster="rstudio-prod", desiredStatus="STOPPED")["taskArns"] == []
    shiny = ecs.list_tasks(cluster="rstudio-prod", family="rstudio-prod-shiny")["taskArns"]
    assert len(shiny) == cfg.instances["prod"].shiny.autoscaling.min and set(shiny) < every
    # the cluster's ARN works as well as its name; an account's clusters are its own
    arn = f"arn:aws:ecs:{REGION}:{PROD}:cluster/rstudio-prod"
    assert set(ecs.list_tasks(cluster=arn)["taskArns"]) == every
    for cluster in ("rstudio-dev", None):
        with pytest.raises(ecs.exceptions.ClusterNotFoundException):
            ecs.list_tasks(**({"cluster": cluster} if cluster else {}))
    for refused in ({"maxResults": 0}, {"maxResults": 101}, {"startedBy": "me", "family": "rstudio-prod-shiny"}):
        with pytest.raises(ecs.exceptions.InvalidParameterException):
            ecs.list_tasks(cluster="rstudio-prod", **refused)
    with pytest.raises(ecs.exceptions.ServiceNotFoundException):
        ecs.list_tasks(cluster="rstudio-prod", serviceName="nope")


def test_ecs_describe_tasks_takes_at_most_100_and_reports_the_missing(rehearsal: Path) -> None:
    model = model_of(rehearsal)
    ecs = reader(model, "ecs")
    arns = ecs.list_tasks(cluster="rstudio-prod")["taskArns"]
    missing = f"arn:aws:ecs:{REGION}:{PROD}:task/rstudio-prod/{'0' * 32}"
    answer = ecs.describe_tasks(cluster="rstudio-prod", tasks=[*arns, missing])
    assert sorted(t["taskArn"] for t in answer["tasks"]) == sorted(arns)
    assert answer["failures"] == [{"arn": missing, "reason": "MISSING"}]
    assert {t["lastStatus"] for t in answer["tasks"]} == {"RUNNING"}
    # by id as well as by ARN; every task carries its ENI
    by_id = ecs.describe_tasks(cluster="rstudio-prod", tasks=[arns[0].rsplit("/", 1)[-1]])["tasks"]
    assert [t["taskArn"] for t in by_id] == [arns[0]]
    details = {d["name"] for d in by_id[0]["attachments"][0]["details"]}
    assert {"networkInterfaceId", "privateIPv4Address", "subnetId"} <= details
    for refused in ([], [arns[0]] * 101):
        with pytest.raises(ecs.exceptions.InvalidParameterException):
            ecs.describe_tasks(cluster="rstudio-prod", tasks=refused)
    # another cluster's task is missing from this one
    assert ecs.describe_tasks(cluster="rstudio-prod", tasks=[arns[0].replace("rstudio-prod/", "other/")])["failures"]


def test_ec2_network_interfaces_have_a_public_ip_only_where_the_service_assigns_one(rehearsal: Path) -> None:
    model = model_of(rehearsal)
    ecs, ec2 = reader(model, "ecs"), reader(model, "ec2")
    described = ecs.describe_tasks(cluster="rstudio-prod",
                                   tasks=ecs.list_tasks(cluster="rstudio-prod")["taskArns"])["tasks"]  # fmt: skip
    enis = {next(d["value"] for d in t["attachments"][0]["details"] if d["name"] == "networkInterfaceId"): t
            for t in described}  # fmt: skip
    interfaces = ec2.describe_network_interfaces(NetworkInterfaceIds=sorted(enis))["NetworkInterfaces"]
    public = {i["NetworkInterfaceId"] for i in interfaces if "Association" in i}
    (bastion,) = [eni for eni, t in enis.items() if "bastion" in t["taskDefinitionArn"]]
    assert public == {bastion}
    assert len({i["PrivateIpAddress"] for i in interfaces}) == len(interfaces)  # no two tasks share an address
    with pytest.raises(ClientError) as raised:
        ec2.describe_network_interfaces(NetworkInterfaceIds=["eni-0000000000000000a"])
    assert error_code(raised) == "InvalidNetworkInterfaceID.NotFound"
    with pytest.raises(ClientError) as raised:
        ec2.describe_network_interfaces(NetworkInterfaceIds=[bastion], MaxResults=5)
    assert error_code(raised) == "InvalidParameterCombination"


def test_a_rehearsal_kept_before_the_model_served_ecs_still_answers_it(rehearsal: Path) -> None:
    model = model_of(rehearsal)
    state = model.world.__getstate__()
    del state["ecs"]
    older = type(model.world).__new__(type(model.world))
    older.__setstate__(state)
    assert [t.arn for t in older.ecs.tasks(Caller(DEV, REGION))] == [t.arn for t in model.world.ecs.tasks(
        Caller(DEV, REGION))]  # fmt: skip
