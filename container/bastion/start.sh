#!/bin/bash
#
# Entrypoint of the SSH bastion (container contract: generator/instance/bastion.py). Installs the admin's public key
# from SSH_PUBLIC_KEY, makes this task's host keys and runs sshd in the foreground, logging to stderr (the task log).
# The steps are ssh_setup.sh's, shared with the sshd of the RStudio and Shiny tasks behind the bastion.
#
# While SSH_PUBLIC_KEY is not an OpenSSH public key (the secret still holds the random placeholder the stack created),
# sshd runs with no authorized key: nobody can log in, but the task stays up, because a task that exits keeps the ECS
# service from stabilising and so fails the whole stack deployment.
#
# BASTION_INIT_ROOT prefixes every absolute path so tests can run this against a scratch directory.
set -euo pipefail
shopt -s inherit_errexit

root="${BASTION_INIT_ROOT:-}"
# The bastion's own account (Dockerfile): the same name as the tasks' admin (generator/instance/ssh.py).
user="admin"

# shellcheck source=/dev/null
. "${root}/usr/local/lib/rstudio-fargate/ssh_setup.sh"
ssh_log_tag bastion-start

if [[ ! -v SSH_PUBLIC_KEY ]]; then
    # shellcheck disable=SC2154 # ssh_secret comes from ssh_setup.sh
    ssh_log "required variable SSH_PUBLIC_KEY is missing (the task injects it from the secret ${ssh_secret})"
    exit 1
fi
ssh_install_key "$user" "${root}/home/${user}"
unset SSH_PUBLIC_KEY
ssh_host_keys "${root}/etc/ssh"
ssh_privsep_dir "${root}/run/sshd"
ssh_exec_sshd "${root}/etc/ssh/sshd_config"
