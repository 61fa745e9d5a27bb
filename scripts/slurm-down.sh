#!/usr/bin/env bash
# Stops the one-node Slurm cluster scripts/slurm-up.sh started (its jobs too).
set -uo pipefail
dir=${1:-/tmp/secvec-slurm}
export SLURM_CONF=$dir/slurm.conf
scancel --me 2>/dev/null
pkill -f "slurmd -f $SLURM_CONF"
pkill -f "slurmctld -c -f $SLURM_CONF"
pkill -f "munged.*$dir/munge"
exit 0
