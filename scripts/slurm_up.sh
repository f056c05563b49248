#!/usr/bin/env bash
# Bring up a minimal single-node SLURM on this host (Debian), for developers and CI.
#
#   sudo scripts/slurm_up.sh            # install if missing, configure, start, wait until idle
#   SLURM_MAX_ARRAY_SIZE=4 scripts/slurm_up.sh   # same, another MaxArraySize (restarts slurmctld)
#
# What it does, each step only when needed (a rerun on a running cluster is a no-op):
#   1. apt-get install slurm-wlm munge        (only if slurmctld/slurmd/munged are missing)
#   2. writes /etc/slurm/slurm.conf for this host: NodeName = `hostname -s`, CPUs from nproc,
#      RealMemory from free, proctrack/linuxproc, task/none, select/cons_tres, no cgroups,
#      SlurmUser = SlurmdUser = root, state under /var/spool/slurm, logs under /var/log/slurm
#   3. creates the munge key and starts munged, slurmctld and slurmd directly (no systemd)
#   4. waits until `sinfo` shows the node idle (SLURM_UP_TIMEOUT seconds, default 60)
# Exit status 0 when the node is idle, non-zero with a message on stderr otherwise.
#
# Environment:
#   SLURM_MAX_ARRAY_SIZE   MaxArraySize of the cluster (default 1001, SLURM's default)
#   SLURM_UP_TIMEOUT       seconds to wait for the node to become idle (default 60)
#   SLURM_CONF_DIR         where slurm.conf goes (default /etc/slurm)
# Must run as root (it installs packages and starts daemons as root).
set -euo pipefail

MAX_ARRAY_SIZE="${SLURM_MAX_ARRAY_SIZE:-1001}"
TIMEOUT="${SLURM_UP_TIMEOUT:-60}"
CONF_DIR="${SLURM_CONF_DIR:-/etc/slurm}"
CONF="$CONF_DIR/slurm.conf"
SPOOL=/var/spool/slurm
LOGDIR=/var/log/slurm

die() { echo "slurm_up: error: $*" >&2; exit 1; }
say() { echo "slurm_up: $*" >&2; }

[[ "$(id -u)" == 0 ]] || die "must run as root (installs packages, starts daemons)"
[[ "$MAX_ARRAY_SIZE" =~ ^[0-9]+$ ]] && (( MAX_ARRAY_SIZE >= 1 )) \
    || die "SLURM_MAX_ARRAY_SIZE must be a positive integer, got '$MAX_ARRAY_SIZE'"
[[ "$TIMEOUT" =~ ^[0-9]+$ ]] || die "SLURM_UP_TIMEOUT must be a whole number of seconds, got '$TIMEOUT'"

# ---- 1. packages ---------------------------------------------------------------------------
if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null \
        || ! command -v munged >/dev/null || ! command -v sinfo >/dev/null; then
    say "installing slurm-wlm and munge with apt-get"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null || die "apt-get update failed"
    apt-get install -y -qq --no-install-recommends slurm-wlm munge >/dev/null \
        || die "apt-get install slurm-wlm munge failed"
fi

# ---- 2. slurm.conf -------------------------------------------------------------------------
NODE="$(hostname -s)"
CPUS="$(nproc)"
MEM_MB="$(free -m | awk '/^Mem:/ {print $2}')"
[[ -n "$NODE" && "$CPUS" =~ ^[0-9]+$ && "$MEM_MB" =~ ^[0-9]+$ ]] \
    || die "could not read hostname/nproc/free (got '$NODE', '$CPUS', '$MEM_MB')"
# Leave a little headroom: slurmd drains a node whose memory is below RealMemory.
REAL_MEM=$(( MEM_MB * 95 / 100 ))

mkdir -p "$CONF_DIR" "$SPOOL/ctld" "$SPOOL/d" "$LOGDIR"
NEW_CONF="$(cat <<EOF
# Written by scripts/slurm_up.sh: a minimal single-node cluster on $NODE.
ClusterName=studentteacher
SlurmctldHost=$NODE(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SchedulerType=sched/backfill
DefMemPerCPU=$(( REAL_MEM / CPUS ))
SlurmdParameters=config_overrides
ReturnToService=2
StateSaveLocation=$SPOOL/ctld
SlurmdSpoolDir=$SPOOL/d
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=$LOGDIR/slurmctld.log
SlurmdLogFile=$LOGDIR/slurmd.log
SlurmctldTimeout=30
SlurmdTimeout=30
KillWait=30
MinJobAge=300
MaxArraySize=$MAX_ARRAY_SIZE
MaxJobCount=$(( MAX_ARRAY_SIZE > 10000 ? MAX_ARRAY_SIZE : 10000 ))
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=$REAL_MEM State=UNKNOWN
PartitionName=debug Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
EOF
)"
CONF_CHANGED=0
if [[ ! -f "$CONF" ]] || [[ "$(cat "$CONF")" != "$NEW_CONF" ]]; then
    printf '%s\n' "$NEW_CONF" > "$CONF"
    CONF_CHANGED=1
    say "wrote $CONF (MaxArraySize=$MAX_ARRAY_SIZE, CPUs=$CPUS, RealMemory=$REAL_MEM)"
fi
# No cgroup.conf: no plugin here uses cgroups (slurmd 22.05 only autodetects the version).

# ---- 3. daemons ----------------------------------------------------------------------------
running() { pgrep -x "$1" >/dev/null; }

if [[ ! -s /etc/munge/munge.key ]]; then
    say "creating the munge key"
    mkdir -p /etc/munge
    if command -v mungekey >/dev/null; then mungekey --create --force >/dev/null
    else dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none; fi
fi
chown munge:munge /etc/munge/munge.key 2>/dev/null || true
chmod 0400 /etc/munge/munge.key
mkdir -p /run/munge /var/lib/munge /var/log/munge
chown munge:munge /run/munge /var/lib/munge /var/log/munge 2>/dev/null || true
chmod 0755 /run/munge
if ! running munged; then
    say "starting munged"
    if id munge >/dev/null 2>&1; then runuser -u munge -- munged
    else munged --force; fi
fi
munge -n | unmunge >/dev/null 2>&1 || die "munge does not work (munge -n | unmunge failed)"

if ! running slurmctld; then
    say "starting slurmctld"
    slurmctld -f "$CONF" || die "slurmctld failed to start; see $LOGDIR/slurmctld.log"
elif (( CONF_CHANGED )); then
    # `scontrol reconfigure` does not apply every setting (MaxArraySize is checked against the
    # value read at start-up), so restart the controller; queued jobs survive in StateSaveLocation.
    say "restarting slurmctld with the new configuration"
    pid="$(cat /run/slurmctld.pid 2>/dev/null || pgrep -x slurmctld)"
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 100); do running slurmctld || break; sleep 0.1; done
    running slurmctld && die "slurmctld (pid $pid) did not stop"
    slurmctld -f "$CONF" || die "slurmctld failed to start; see $LOGDIR/slurmctld.log"
    if running slurmd; then SLURM_CONF="$CONF" scontrol reconfigure >/dev/null 2>&1 || true; fi
fi
if ! running slurmd; then
    say "starting slurmd"
    slurmd -f "$CONF" || die "slurmd failed to start; see $LOGDIR/slurmd.log"
fi

# ---- 4. wait until the node is idle ----------------------------------------------------------
export SLURM_CONF="$CONF"
deadline=$(( SECONDS + TIMEOUT ))
state=""
while (( SECONDS < deadline )); do
    state="$(sinfo --noheader --nodes="$NODE" --format=%T 2>/dev/null | head -n1 || true)"
    case "$state" in
        idle|mixed|allocated|completing)
            # The node is up; check the ctld serves the MaxArraySize we asked for.
            have="$(scontrol show config 2>/dev/null | awk -F' *= *' '/^MaxArraySize/ {print $2}')"
            if [[ "$have" == "$MAX_ARRAY_SIZE" ]]; then
                [[ "$state" == idle ]] || say "node is $state (jobs running)"
                say "up: node $NODE $state, MaxArraySize=$have"
                exit 0
            fi ;;
        down*|drain*|drained*|fail*)
            scontrol update NodeName="$NODE" State=RESUME >/dev/null 2>&1 || true ;;
    esac
    sleep 1
done
die "node $NODE is not idle after ${TIMEOUT}s (sinfo state: '${state:-none}'); see $LOGDIR/slurmctld.log and $LOGDIR/slurmd.log"
