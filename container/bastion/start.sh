#!/bin/bash
#
# Entrypoint of the SSH bastion (container contract: generator/instance/bastion.py). Installs the admin's public key
# from SSH_PUBLIC_KEY, makes this task's host keys and runs sshd in the foreground, logging to stderr (the task log).
#
# While SSH_PUBLIC_KEY is not an OpenSSH public key (the secret still holds the random placeholder the stack created),
# sshd runs with no authorized key: nobody can log in, but the task stays up, because a task that exits keeps the ECS
# service from stabilising and so fails the whole stack deployment. The key is only ever logged by type and comment.
#
# BASTION_INIT_ROOT prefixes every absolute path so tests can run this against a scratch directory.
set -euo pipefail
shopt -s inherit_errexit

root="${BASTION_INIT_ROOT:-}"
user="admin"
ssh_dir="${root}/home/${user}/.ssh"
authorized_keys="${ssh_dir}/authorized_keys"
host_key_dir="${root}/etc/ssh"
sshd_config="${root}/etc/ssh/sshd_config"
privsep_dir="${root}/run/sshd"
# The task does not know its instance's name unless RSTUDIO_INSTANCE is set; the log group's name shows it anyway.
secret="rstudio/${RSTUDIO_INSTANCE:-<instance>}/bastion/ssh-public-key"

# One key of a type sshd_config accepts, with no options before the type (what the admin may do is sshd_config's
# alone, not the secret's); ssh-keygen then checks the key itself.
key_pattern='^(ssh-ed25519|sk-ssh-ed25519@openssh\.com|ecdsa-sha2-nistp(256|384|521)|sk-ecdsa-sha2-nistp256@openssh\.com|ssh-rsa) [A-Za-z0-9+/]+={0,2}( [^[:cntrl:]]*)?$'

log() {
    echo "bastion-start: $*" >&2
}

die() {
    log "$*"
    exit 1
}

trim() {
    local value="$1"
    value="${value#"${value%%[![:space:]]*}"}"
    printf '%s' "${value%"${value##*[![:space:]]}"}"
}

# A private temporary file next to authorized_keys, for ssh-keygen to check the key before it is moved into place:
# authorized_keys holds exactly this key or does not exist.
candidate_file() {
    mkdir -p "$ssh_dir"
    chmod 0700 "$ssh_dir"
    chown "${user}:${user}" "$ssh_dir"
    mktemp "${ssh_dir}/.authorized_keys.XXXXXX"
}

no_key() {
    rm -f "$authorized_keys"
    log "ERROR: SSH_PUBLIC_KEY is not an OpenSSH public key (the secret ${secret} still holds its placeholder?)." \
        "sshd runs with no authorized key, so nobody can log in. Put the admin's public key into the secret and" \
        "force a new deployment of the bastion service (see generator/instance/bastion.py)."
}

# Host keys belong to this task: the image has none, so every task makes its own and logs their fingerprints, which
# the admin compares with what ssh shows on first connection.
host_keys() {
    local type file
    for type in ed25519 rsa; do
        file="${host_key_dir}/ssh_host_${type}_key"
        if [[ ! -f "$file" ]]; then
            ssh-keygen -q -t "$type" -N '' -C '' -f "$file"
        fi
        log "host key $(ssh-keygen -l -f "${file}.pub")"
    done
}

[[ -v SSH_PUBLIC_KEY ]] || die "required variable SSH_PUBLIC_KEY is missing (the task injects it from the secret ${secret})"
key="$(trim "$SSH_PUBLIC_KEY")"
candidate="$(candidate_file)"
printf '%s\n' "$key" >"$candidate"
if [[ "$key" =~ $key_pattern ]] && ssh-keygen -l -f "$candidate" >/dev/null 2>&1; then
    chmod 0600 "$candidate"
    chown "${user}:${user}" "$candidate"
    mv -f "$candidate" "$authorized_keys"
    read -r key_type _ key_comment <<<"$key"
    log "authorized ${key_type} key '${key_comment:-no comment}' for user ${user}"
else
    rm -f "$candidate"
    no_key
fi
unset SSH_PUBLIC_KEY key

host_keys
mkdir -p "$privsep_dir"
chmod 0755 "$privsep_dir"
# sshd re-executes itself for each connection and so insists on being started by its absolute path.
exec "$(command -v sshd)" -D -e -f "$sshd_config"
