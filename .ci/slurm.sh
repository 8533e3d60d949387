#!/usr/bin/env bash
# CI: a single-node SLURM cluster on loopback, from Debian 12's own packages
# (munge + slurm-wlm 22.05), so that tests can submit real jobs with sbatch.
# Run as root on a machine without systemd (a container). Safe to run twice.
#   .ci/slurm.sh        install, configure, start, wait until the node is idle
#   .ci/slurm.sh stop   stop slurmctld, slurmd and munged again
set -euo pipefail

export DEBIAN_FRONTEND=noninteractive
conf=/etc/slurm/slurm.conf
logdir=/var/log/slurm
spool=/var/spool/slurm
pkgs=(munge slurmctld slurmd slurm-client)

# Whether a pid is a live process: not a zombie, as a daemon's exit leaves one
# when PID 1 of a container does not reap.
running() {
  local state
  state=$(awk '/^State:/ {print $2}' "/proc/$1/status" 2>/dev/null) && [[ -n $state && $state != Z ]]
}

# The pid of a running daemon, from its pid file /run/NAME.pid, checked against
# the process name (a stale file may name a reused pid). No pgrep: procps is
# not in a minimal Debian image.
daemon_pid() {
  local pid
  pid=$(cat "/run/$1.pid" 2>/dev/null) || return 1
  [[ $(cat "/proc/$pid/comm" 2>/dev/null) == "${1##*/}" ]] && running "$pid" && echo "$pid"
}
alive() { daemon_pid "$1" >/dev/null; }

# Stop a daemon and wait for it to go (up to 15 s).
stop_daemon() {
  local pid i
  pid=$(daemon_pid "$1") || return 0
  kill "$pid" 2>/dev/null || true
  for ((i = 0; i < 30; i++)); do running "$pid" || return 0; sleep 0.5; done
  echo "slurm: $1 (pid $pid) did not stop" >&2
  return 1
}

if [[ ${1:-} == stop ]]; then
  stop_daemon slurmd
  stop_daemon slurmctld
  stop_daemon munge/munged
  echo "slurm: stopped"
  exit 0
fi

if ((EUID != 0)); then
  echo "slurm: run this as root" >&2
  exit 1
fi

# 1. Packages, quietly: apt's output is shown only when it fails. The package
# lists are updated only when needed: a fresh image has none, and old ones may
# name versions the mirror no longer has (then the install fails once).
installed() {
  local p
  for p in "$@"; do
    [[ $(dpkg-query -W -f='${Status}' "$p" 2>/dev/null) == "install ok installed" ]] || return 1
  done
}
if ! installed "${pkgs[@]}"; then
  apt_log=$(mktemp)
  apt_install() { apt-get install -y -q --no-install-recommends "${pkgs[@]}" >"$apt_log" 2>&1; }
  if ! apt-cache show "${pkgs[@]}" >/dev/null 2>&1 || ! apt_install; then
    if ! apt-get update -q >"$apt_log" 2>&1 || ! apt_install; then
      cat "$apt_log" >&2
      echo "slurm: could not install ${pkgs[*]}" >&2
      exit 1
    fi
  fi
  rm -f "$apt_log"
fi

# 2. MUNGE, which slurm uses to authenticate its messages. The Debian package
# usually makes the key; make one if not. munged refuses a key that others
# can read.
key=/etc/munge/munge.key
if [[ ! -s $key ]]; then
  install -d -o munge -g munge -m 0700 /etc/munge
  dd if=/dev/urandom of="$key" bs=1024 count=1 status=none
  chown munge:munge "$key"
  chmod 0400 "$key"
fi
if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
  # No systemd: make its RuntimeDirectory, then run munged as the munge user,
  # as munge.service does. A stale socket from a killed munged is removed.
  install -d -o munge -g munge -m 0755 /run/munge
  stop_daemon munge/munged
  rm -f /run/munge/munge.socket.2 /run/munge/munge.socket.2.lock
  runuser -u munge -- /usr/sbin/munged
fi
munge -n | unmunge >/dev/null || { echo "slurm: munge does not work" >&2; exit 1; }

# 3. slurm.conf for this one machine. The node is this host's short name (slurmd
# finds its NodeName by the hostname) at 127.0.0.1, so no DNS is needed.
# Resources come from the machine, less some memory for the OS and CI itself.
node=$(uname -n)
node=${node%%.*}
cpus=$(nproc)
mem_mib=$(($(awk '/^MemTotal:/ {print $2}' /proc/meminfo) / 1024))
real_mib=$((mem_mib - mem_mib / 10 > 512 ? mem_mib - mem_mib / 10 : mem_mib / 2))

install -d -o slurm -g slurm -m 0755 "$logdir" "$spool/ctld"
install -d -o root -g root -m 0755 "$spool/d"

new_conf=$(cat <<EOF
# Written by .ci/slurm.sh: one node on loopback, for CI.
ClusterName=ci
SlurmctldHost=$node(127.0.0.1)
SlurmUser=slurm
AuthType=auth/munge
MpiDefault=none
MailProg=/bin/true
ReturnToService=2
StateSaveLocation=$spool/ctld
SlurmdSpoolDir=$spool/d
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=$logdir/slurmctld.log
SlurmdLogFile=$logdir/slurmd.log
# No cgroups: containers often have none that are writable.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
# Cores and memory are consumable, so several 1-core jobs run side by side;
# a job that asks no memory gets its share per CPU, not the whole node.
SchedulerType=sched/backfill
# Start a batch job as soon as it is submitted, not up to 3 s later (the default
# batch_sched_delay), so tests do not wait.
SchedulerParameters=batch_sched_delay=0
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=$((real_mib / cpus))
# Trust the counts below, not the hardware slurmd sees: each logical CPU is a
# core (else, with hyperthreads, a 1-CPU job takes a whole core), and a small
# difference in memory does not drain the node.
SlurmdParameters=config_overrides
NodeName=$node NodeAddr=127.0.0.1 NodeHostname=$node CPUs=$cpus Sockets=1 CoresPerSocket=$cpus ThreadsPerCore=1 RealMemory=$real_mib State=UNKNOWN
PartitionName=debug Nodes=$node Default=YES MaxTime=INFINITE State=UP
EOF
)

# A changed configuration (new machine size, new script) restarts the daemons;
# an unchanged one leaves running daemons, and their jobs, alone.
if [[ ! -f $conf ]] || [[ $(cat "$conf") != "$new_conf" ]]; then
  install -d -m 0755 /etc/slurm
  printf '%s\n' "$new_conf" >"$conf"
  stop_daemon slurmd
  stop_daemon slurmctld
fi

# 4. The daemons, in the background (they detach themselves). slurmctld starts
# as root and drops to SlurmUser; slurmd stays root to start jobs as their user.
alive slurmctld || slurmctld
alive slurmd || slurmd

# Wait until the controller answers and the node is idle (or running jobs).
# A node left down or drained by an earlier run is resumed.
state=
for ((i = 0; i < 60; i++)); do
  state=$(sinfo -h -n "$node" -o %T 2>/dev/null | head -n 1 || true)
  case $state in
    idle | mixed | allocated | completing) break ;;
    down* | drain* | fail*)
      scontrol update nodename="$node" state=resume 2>/dev/null || true ;;
  esac
  sleep 1
done
case $state in
  idle | mixed | allocated | completing) ;;
  *)
    echo "slurm: node $node is not up after 60 s (state: ${state:-no answer})" >&2
    sinfo -N -l >&2 || true
    scontrol show node "$node" >&2 || true
    for f in "$logdir"/slurmctld.log "$logdir"/slurmd.log; do
      echo "--- tail of $f" >&2
      tail -n 30 "$f" >&2 || true
    done
    exit 1 ;;
esac

echo "slurm: node $node $state, $cpus CPUs, $real_mib MiB"
