#!/usr/bin/env bash
# Run the faket workflow on a real single-node SLURM cluster on localhost and check that its outputs
# equal a local run's (same config, same seeds).
#
#   bash tests/slurm/run_slurm_test.sh            # the tiny test config (2 tomograms, 32x64x64, 11 tilts)
#   FAKET_SLURM_CONFIG=default bash tests/slurm/run_slurm_test.sh   # the embedded default config
#   FAKET_SLURM_TARGETS="results/tiny_000/tomogram_noisy_bin2.mrc" ...  # only these targets
#
# Needs root (apt-get, munge, slurm daemons) on Debian/Ubuntu. Installs slurm-wlm and munge, starts munged,
# slurmctld and slurmd with a private slurm.conf (SLURM_CONF, no systemd, no cgroups, no accounting),
# runs Snakemake with snakemake-executor-plugin-slurm (--slurm-status-command squeue --slurm-no-account),
# compares arrays, and stops every daemon it started by PID. Exit 0 = same outputs.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
VENV="${FAKET_VENV:-$ROOT/.venv}"
export PATH="$VENV/bin:$PATH"
WORK="$(mktemp -d /tmp/faket-slurm-test.XXXXXX)"
SLURM_DIR="$WORK/slurm"
MODE="${FAKET_SLURM_CONFIG:-tiny}"
HOST="$(hostname -s)"
STARTED_PIDS=()
t_start=$(date +%s)

log() { echo "[slurm-test $(date -u +%H:%M:%S)] $*"; }

cleanup() {
  local rc=$?
  set +e
  if [ ${#STARTED_PIDS[@]} -gt 0 ]; then
    log "stopping daemons: ${STARTED_PIDS[*]}"
    for pid in "${STARTED_PIDS[@]}"; do kill "$pid" 2>/dev/null; done
    sleep 2
    for pid in "${STARTED_PIDS[@]}"; do kill -0 "$pid" 2>/dev/null && kill -9 "$pid" 2>/dev/null; done
  fi
  if [ -n "${RESTORE_CONF:-}" ]; then
    if [ -e "$WORK/slurm.conf.orig" ]; then cp -p "$WORK/slurm.conf.orig" /etc/slurm/slurm.conf
    else rm -f /etc/slurm/slurm.conf; fi
  fi
  if [ "$rc" -ne 0 ]; then
    log "FAILED (rc=$rc); logs kept in $WORK"
    for f in "$SLURM_DIR"/log/*.log; do [ -f "$f" ] && { echo "--- $f"; tail -n 20 "$f"; }; done
  else
    rm -rf "$WORK"
  fi
  exit "$rc"
}
trap cleanup EXIT

# ------------------------------------------------------------------------------------------------
# 1. packages
if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
  log "installing slurm-wlm and munge"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq slurm-wlm munge >/dev/null
fi
log "$(slurmctld -V)"

# ------------------------------------------------------------------------------------------------
# 2. munge
mkdir -p /etc/munge /run/munge /var/lib/munge /var/log/munge
if [ ! -s /etc/munge/munge.key ]; then
  dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key status=none
fi
chown -R munge:munge /etc/munge /run/munge /var/lib/munge /var/log/munge
chmod 400 /etc/munge/munge.key
chmod 755 /run/munge
if munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
  log "munged already running (not started by this test)"
else
  runuser -u munge -- /usr/sbin/munged --force
  for _ in $(seq 1 50); do [ -s /run/munge/munged.pid ] && break; sleep 0.1; done
  STARTED_PIDS+=("$(cat /run/munge/munged.pid)")
  munge -n | unmunge >/dev/null
  log "munged started (pid ${STARTED_PIDS[-1]})"
fi

# ------------------------------------------------------------------------------------------------
# 3. a private single-node cluster
mkdir -p "$SLURM_DIR"/{spool/ctld,spool/d,log,run}
MEM_MB=$(awk '/MemTotal/ {print int($2/1024) - 1024}' /proc/meminfo)
CPUS=$(nproc)
# Job steps (srun inside the batch jobs) read the default /etc/slurm/slurm.conf, whatever SLURM_CONF says:
# install ours there and put back what was there before when the test ends.
export SLURM_CONF=/etc/slurm/slurm.conf
mkdir -p /etc/slurm
if [ -e "$SLURM_CONF" ]; then cp -p "$SLURM_CONF" "$WORK/slurm.conf.orig"; fi
RESTORE_CONF=1
cat > "$SLURM_CONF" <<EOF
ClusterName=fakettest
SlurmctldHost=$HOST
AuthType=auth/munge
CredType=cred/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SlurmUser=root
SlurmdUser=root
ReturnToService=2
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MpiDefault=none
SlurmctldPort=16817
SlurmdPort=16818
StateSaveLocation=$SLURM_DIR/spool/ctld
SlurmdSpoolDir=$SLURM_DIR/spool/d
SlurmctldPidFile=$SLURM_DIR/run/slurmctld.pid
SlurmdPidFile=$SLURM_DIR/run/slurmd.pid
SlurmctldLogFile=$SLURM_DIR/log/slurmctld.log
SlurmdLogFile=$SLURM_DIR/log/slurmd.log
SchedulerType=sched/backfill
InactiveLimit=0
KillWait=10
MinJobAge=300
SlurmctldTimeout=60
SlurmdTimeout=60
NodeName=$HOST CPUs=$CPUS RealMemory=$MEM_MB State=UNKNOWN
PartitionName=debug Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
EOF
/usr/sbin/slurmctld -f "$SLURM_CONF"
for _ in $(seq 1 100); do [ -s "$SLURM_DIR/run/slurmctld.pid" ] && break; sleep 0.1; done
STARTED_PIDS+=("$(cat "$SLURM_DIR/run/slurmctld.pid")")
/usr/sbin/slurmd -f "$SLURM_CONF"
for _ in $(seq 1 100); do [ -s "$SLURM_DIR/run/slurmd.pid" ] && break; sleep 0.1; done
STARTED_PIDS+=("$(cat "$SLURM_DIR/run/slurmd.pid")")
for _ in $(seq 1 60); do
  state=$(sinfo -h -n "$HOST" -o %t 2>/dev/null || true)
  [ "$state" = "idle" ] && break
  sleep 1
done
log "node $HOST: $(sinfo -h -n "$HOST" -o '%t %c CPUs %m MB')"
[ "$(sinfo -h -n "$HOST" -o %t)" = "idle" ] || { log "node not idle"; exit 1; }

# ------------------------------------------------------------------------------------------------
# 4. the config (same for both runs)
CFG="$WORK/config.yaml"
if [ "$MODE" = "default" ]; then
  python - "$CFG" "$ROOT" <<'EOF'
import sys, yaml
cfg = yaml.safe_load(open(f"{sys.argv[2]}/config/config.yaml"))
cfg["manifest"] = f"{sys.argv[2]}/data_manifest.csv"
cfg["layout"]["spec"] = f"{sys.argv[2]}/{cfg['layout']['spec']}" if cfg["layout"]["spec"] else ""
yaml.safe_dump(cfg, open(sys.argv[1], "w"), sort_keys=False)
EOF
else
  python - "$WORK" "$ROOT" <<'EOF'
import sys
from pathlib import Path
sys.path.insert(0, f"{sys.argv[2]}/tests")
from test_workflow import tiny_config
p = tiny_config(Path(sys.argv[1]))
print(p.read_text())
EOF
fi

# Both runs use one snapshot of the code (the package via PYTHONPATH, the workflow files), so edits in
# the checkout while the test runs cannot make the two runs differ.
SRC="$WORK/src"
mkdir -p "$SRC"
cp -r "$ROOT/faket" "$ROOT/Snakefile" "$ROOT/workflow" "$ROOT/config" "$SRC/"
export PYTHONPATH="$SRC${PYTHONPATH:+:$PYTHONPATH}"
(cd "$WORK" && python -c "import faket; assert faket.__file__.startswith('$SRC'), faket.__file__")
SM=(snakemake -s "$SRC/Snakefile" --configfile "$CFG" --nocolor --rerun-incomplete)
# optional targets (default: rule all), e.g. FAKET_SLURM_TARGETS="results/tiny_000/tomogram_noisy_bin2.mrc"
read -r -a TARGETS <<< "${FAKET_SLURM_TARGETS:-}"

# ------------------------------------------------------------------------------------------------
# 5. local run, then the same on SLURM
log "local run"
t0=$(date +%s)
"${SM[@]}" -d "$WORK/local" --cores 2 "${TARGETS[@]}" > "$WORK/local.log" 2>&1 || { tail -n 40 "$WORK/local.log"; exit 1; }
t_local=$(( $(date +%s) - t0 ))
log "local run done in ${t_local}s"

log "SLURM run"
t0=$(date +%s)
"${SM[@]}" -d "$WORK/cluster" --executor slurm --jobs 4 \
  --slurm-no-account --slurm-status-command squeue \
  --slurm-init-seconds-before-status-checks 5 \
  --default-resources mem_mb=1500 runtime=30 slurm_partition=debug \
  --latency-wait 30 "${TARGETS[@]}" > "$WORK/slurm.log" 2>&1 || { tail -n 60 "$WORK/slurm.log"; exit 1; }
t_slurm=$(( $(date +%s) - t0 ))
n_jobs=$(grep -c "submitted with SLURM jobid" "$WORK/slurm.log" || true)
log "SLURM run done in ${t_slurm}s ($n_jobs jobs submitted through sbatch)"
[ "$n_jobs" -gt 0 ] || { log "no job went through SLURM"; exit 1; }

# ------------------------------------------------------------------------------------------------
# 6. compare
python - "$WORK/local" "$WORK/cluster" <<'EOF'
import sys
from pathlib import Path
import numpy as np
import mrcfile

a, b = Path(sys.argv[1]) / "results", Path(sys.argv[2]) / "results"
fa = {p.relative_to(a) for p in a.rglob("*") if p.is_file() and "style_cache" not in p.parts}
fb = {p.relative_to(b) for p in b.rglob("*") if p.is_file() and "style_cache" not in p.parts}
assert fa == fb, f"different file sets: only local {sorted(fa - fb)[:5]}, only SLURM {sorted(fb - fa)[:5]}"
n_mrc = n_txt = 0
bad = []   # every file that differs (not only the first): which steps diverge tells where to look
for rel in sorted(fa):
    if rel.suffix == ".mrc":
        with mrcfile.open(a / rel, permissive=True) as x, mrcfile.open(b / rel, permissive=True) as y:
            if x.data.shape != y.data.shape:
                bad.append(f"{rel}: shapes {x.data.shape} and {y.data.shape}")
            elif not np.array_equal(x.data, y.data):
                bad.append(f"{rel}: arrays differ (max |diff| "
                           f"{np.abs(x.data.astype(float) - y.data.astype(float)).max():g})")
        n_mrc += 1
    elif rel.suffix == ".star":   # starfile stamps a creation time in a comment: compare the data lines
        la = [x for x in (a / rel).read_text().splitlines() if not x.startswith("#")]
        lb = [x for x in (b / rel).read_text().splitlines() if not x.startswith("#")]
        if la != lb:
            bad.append(f"{rel}: STAR data differ")
        n_txt += 1
    elif rel.suffix in (".csv", ".txt", ".tlt"):
        if (a / rel).read_bytes() != (b / rel).read_bytes():
            bad.append(f"{rel}: text differs")
        n_txt += 1
if bad:
    for line in bad:
        print(f"[slurm-test] DIFFERENT {line}")
    # how the gathered style chunks ran in each (threads, host, environment; faket stack keeps them)
    import json
    for rel in sorted(r for r in fa if r.name == "faket.json"):
        for side, root in (("local", a), ("SLURM", b)):
            runs = [c.get("run") for c in json.loads((root / rel).read_text()).get("chunks", [])]
            print(f"[slurm-test] {side} {rel}: {runs}")
    raise SystemExit(f"{len(bad)} of {len(fa)} files differ between the local and the SLURM run")
print(f"[slurm-test] identical: {n_mrc} MRC arrays and {n_txt} tables/angle files ({len(fa)} files)")
EOF
log "PASS: SLURM outputs equal the local run's (local ${t_local}s, SLURM ${t_slurm}s, total $(( $(date +%s) - t_start ))s)"
