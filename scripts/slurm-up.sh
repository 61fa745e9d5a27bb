#!/usr/bin/env bash
# Brings up a one-node Slurm cluster on 127.0.0.1 (munge, slurmctld, slurmd from Debian's
# slurm-wlm packages) with its state under DIR (default /tmp/secvec-slurm), for the Slurm tests
# and benchmarks. Idempotent: a cluster already answering is left as it is. Needs root (the
# daemons run as root, as on a test node). Prints the line to point clients at it:
#   export SLURM_CONF=DIR/slurm.conf
# scripts/slurm-down.sh DIR stops it.
set -euo pipefail
dir=${1:-/tmp/secvec-slurm}
if [ "$(id -u)" != 0 ]; then
  echo "slurm-up: needs root to start munged, slurmctld and slurmd" >&2
  exit 1
fi
for tool in munged slurmctld slurmd sbatch; do
  command -v $tool >/dev/null || { echo "slurm-up: $tool is missing: apt-get install slurmctld slurmd slurm-client munge" >&2; exit 1; }
done
export SLURM_CONF=$dir/slurm.conf
if [ -f "$SLURM_CONF" ] && timeout 5 sinfo -h -o %T 2>/dev/null | grep -q idle; then
  echo "export SLURM_CONF=$SLURM_CONF"
  exit 0
fi
mkdir -p "$dir"/{munge,state,spool,log}
chmod 700 "$dir/munge"
[ -f "$dir/munge/munge.key" ] || { head -c 1024 /dev/urandom > "$dir/munge/munge.key"; chmod 400 "$dir/munge/munge.key"; }
pkill -f "munged.*$dir/munge" 2>/dev/null || true
munged --key-file "$dir/munge/munge.key" --socket "$dir/munge/munge.socket" \
  --pid-file "$dir/munge/munged.pid" --log-file "$dir/log/munged.log" \
  --seed-file "$dir/munge/munge.seed" --force
host=$(hostname -s)
cpus=$(nproc)
mem=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 - 1024 ))
cat > "$SLURM_CONF" <<CONF
ClusterName=secvec-test
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$dir/munge/munge.socket
CredType=cred/munge
SlurmctldPort=16817
SlurmdPort=16818
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
ProctrackType=proctrack/pgid
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
ReturnToService=2
SchedulerParameters=sched_interval=1
MinJobAge=600
DefMemPerCPU=2000
KillWait=5
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONF
pkill -f "slurmctld.*$SLURM_CONF" 2>/dev/null || true
pkill -f "slurmd.*$SLURM_CONF" 2>/dev/null || true
sleep 0.5
slurmctld -c -f "$SLURM_CONF"
slurmd -f "$SLURM_CONF"
for _ in $(seq 60); do
  if sinfo -h -o %T 2>/dev/null | grep -q idle; then
    echo "export SLURM_CONF=$SLURM_CONF"
    exit 0
  fi
  sleep 0.5
done
echo "slurm-up: the node did not come up; see $dir/log" >&2
sinfo >&2 || true
exit 1
