#!/usr/bin/env bash
# Autoscaling rehearsal: the cluster's life cycle on this one machine, without a cloud or a GPU.
#
#   scripts/autoscale_rehearsal.sh            # the smoke search (the probe where search/run.py is missing)
#   REHEARSAL_WORKLOAD=probe  scripts/autoscale_rehearsal.sh   # Ray actors asking for {"GPU": 0.5}
#   REHEARSAL_WORKLOAD=search scripts/autoscale_rehearsal.sh   # the smoke search below
#
# What it does:
#   1. starts a LOCAL autoscaling Ray cluster: a head with no CPUs or GPUs (like cluster.yaml's)
#      whose autoscaler uses Ray's fake multi-node provider (scripts/autoscale_rehearsal.yaml):
#      each "node" it adds is one more raylet on this machine with logical GPUs;
#   2. runs a workload that asks for GPUs, so the autoscaler has to add GPU nodes:
#        python -m search.run space=augmentation budget=smoke address=auto gpus_per_trial=0.5 \
#            storage=<local folder> name=autoscale-rehearsal
#      (plus shared=true, see Storage below; the trials train on the CPU: the GPUs are logical),
#      or, with REHEARSAL_WORKLOAD=probe (and when search/run.py is absent), four Ray actors that
#      each ask for {"CPU": 1, "GPU": 0.5} and report where they ran;
#   3. prints `ray status` with the GPU nodes, then (REHEARSAL_SCALEDOWN=1, the default) waits until
#      the idle GPU nodes are removed again (idle_timeout_minutes: 1) and prints it once more;
#   4. stops everything it started, also on failure or Ctrl-C (trap on EXIT).
#
# Storage: a local folder (REHEARSAL_STORAGE, default runs/autoscale-rehearsal/<date-time>) works
# here only because every fake node shares this machine's file system; search.run refuses a local
# path with address= unless shared=true says so. On a real cluster Tune needs storage every node
# reaches (s3://... or an NFS mount with shared=true): see README.md, "The cluster".
#
# Security as on the real cluster: token authentication (RAY_AUTH_MODE=token, a fresh token in a
# private temporary folder), the dashboard on 127.0.0.1 on a free port.
#
# Isolation: the cluster gets its own temp dir, free ports and its own session (setsid), and the
# driver finds it through RAY_ADDRESS, not through "the latest cluster on this machine". Cleanup
# kills exactly the processes of that session (SIGTERM, then SIGKILL). It does not run a bare
# `ray stop --force`, which would also stop every other Ray instance on the machine (another
# user's, another test's); set REHEARSAL_STOP_ALL=1 to run it too, on a machine that is yours alone.
#
# Needs: the project's venv (make setup) and Fashion-MNIST for the search workload (make data).
# Environment knobs: PYTHON (default .venv/bin/python), REHEARSAL_WORKLOAD (auto|search|probe),
# REHEARSAL_STORAGE, REHEARSAL_SCALEDOWN (1|0), REHEARSAL_KEEP (1 keeps the temp dir with the logs),
# REHEARSAL_STOP_ALL (0|1).
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)

PY=${PYTHON:-.venv/bin/python}
RAY="$("$PY" -c 'import os, sys; print(os.path.dirname(sys.executable))')/ray"
[ -x "$RAY" ] || { echo "no ray CLI next to $PY: run 'make setup' first" >&2; exit 2; }
WORKLOAD=${REHEARSAL_WORKLOAD:-auto}
if [ "$WORKLOAD" = auto ]; then
    if [ -f search/run.py ]; then WORKLOAD=search; else WORKLOAD=probe; fi
fi
STORAGE=${REHEARSAL_STORAGE:-$REPO/runs/autoscale-rehearsal/$(date +%Y%m%d-%H%M%S)}
SCALEDOWN=${REHEARSAL_SCALEDOWN:-1}
# The fake provider names the head node like this; `ray status` then lists it as ray.head.default.
HEAD_NODE_ID=fffffffffffffffffffffffffffffffffffffffffffffffffff00000

# A short temp dir: Ray's Unix socket paths under it must stay below about 107 characters.
WORK=$(mktemp -d /tmp/fmnist-rehearsal.XXXXXX)
SID=""
OWN_SID=$(ps -o sid= -p $$ | tr -d ' ')  # never this script's own session

log() { printf '\n== %s\n' "$*"; }

session_pids() {  # every process of the cluster's session, fake nodes and their workers included
    [ -n "$SID" ] && [ "$SID" != "$OWN_SID" ] || return 0
    ps -eo pid=,sid=,stat= | awk -v s="$SID" '$2 == s && $3 !~ /^Z/ {print $1}'  # zombies: init reaps them
}

cleanup() {
    local rc=$? pids i
    trap - EXIT INT TERM
    if [ -n "${DRIVER_PID:-}" ] && kill -0 "$DRIVER_PID" 2>/dev/null; then
        kill -TERM "$DRIVER_PID" 2>/dev/null || true
        wait "$DRIVER_PID" 2>/dev/null || true
    fi
    if [ -z "$SID" ] && [ -s "$WORK/sid" ]; then SID=$(tr -d ' ' < "$WORK/sid"); fi
    log "stopping the rehearsal cluster (session $SID)"
    pids=$(session_pids)
    if [ -n "$pids" ]; then
        kill -TERM $pids 2>/dev/null || true
        for i in $(seq 20); do
            [ -z "$(session_pids)" ] && break
            sleep 0.5
        done
        pids=$(session_pids)
        [ -n "$pids" ] && kill -KILL $pids 2>/dev/null || true
        sleep 1
    fi
    if [ "${REHEARSAL_STOP_ALL:-0}" = 1 ]; then
        "$RAY" stop --force || true
    fi
    if [ -n "$(session_pids)" ]; then
        echo "still running after cleanup:" >&2
        ps -o pid,args -p "$(session_pids | paste -sd, -)" >&2 || true
        rc=1
    else
        echo "no process of the rehearsal cluster is left"
    fi
    if [ "${REHEARSAL_KEEP:-0}" = 1 ]; then
        echo "logs kept in $WORK/ray/session_latest/logs"
    else
        rm -rf "$WORK"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Token authentication, as on the real cluster; pinned explicitly, never inherited by accident.
(umask 077; "$PY" -c 'import secrets; print(secrets.token_hex(32))' > "$WORK/token")
export RAY_AUTH_MODE=token RAY_AUTH_TOKEN_PATH="$WORK/token"
export RAY_USAGE_STATS_ENABLED=0

read -r IP GCS_PORT DASH_PORT CLIENT_PORT AGENT_PORT < <("$PY" - <<'EOF'
import socket
from ray._private.services import get_node_ip_address

socks = [socket.socket() for _ in range(4)]
for s in socks:
    s.bind(("", 0))
print(get_node_ip_address(), *(s.getsockname()[1] for s in socks))
EOF
)
# Ray starts a Ray Client server (default port 10001) only where ray[client] is installed.
CLIENT_ARGS=()
if "$PY" -c 'from ray._private.parameter import get_ray_client_dependency_error as e; raise SystemExit(e() is not None)' 2>/dev/null; then
    CLIENT_ARGS=(--ray-client-server-port="$CLIENT_PORT")
fi
[ -n "${AGENT_PORT:-}" ] || { echo "could not pick free ports" >&2; exit 1; }
ADDRESS="$IP:$GCS_PORT"
# The provider starts worker raylets against provider.gcs_address: point the copy at this head.
sed "s|^  gcs_address: .*|  gcs_address: \"$ADDRESS\"|" scripts/autoscale_rehearsal.yaml > "$WORK/autoscaling.yaml"

log "starting the head at $ADDRESS (no CPUs, no GPUs; fake multi-node autoscaler)"
# setsid: the head and everything it starts (the autoscaler, and through it the fake nodes) share
# one new session, which is what cleanup() kills. The session id is written before exec.
env RAY_FAKE_CLUSTER=1 AUTOSCALER_UPDATE_INTERVAL_S=2 \
    RAY_OVERRIDE_NODE_ID_FOR_TESTING=$HEAD_NODE_ID RAY_CLOUD_INSTANCE_ID=$HEAD_NODE_ID \
    setsid bash -c 'ps -o sid= -p $$ > "$0"; exec "$@"' "$WORK/sid" \
    "$RAY" start --head --port="$GCS_PORT" --num-cpus=0 --num-gpus=0 \
        --autoscaling-config="$WORK/autoscaling.yaml" --temp-dir="$WORK/ray" \
        --dashboard-host=127.0.0.1 --dashboard-port="$DASH_PORT" \
        --dashboard-agent-listen-port="$AGENT_PORT" ${CLIENT_ARGS[@]+"${CLIENT_ARGS[@]}"} \
        --disable-usage-stats > "$WORK/ray_start.log" 2>&1 \
    || { cat "$WORK/ray_start.log" >&2; exit 1; }
SID=$(tr -d ' ' < "$WORK/sid")
export RAY_ADDRESS="$ADDRESS"   # address=auto resolves to this cluster, not another one here
"$RAY" status

gpu_nodes() {  # active GPU worker nodes in `ray status`
    "$RAY" status 2>/dev/null | awk '/^Active:/ {a=1; next} /^Pending:/ {a=0} a && /gpu\./ {n += $1} END {print n + 0}'
}

log "workload: $WORKLOAD"
START=$SECONDS
if [ "$WORKLOAD" = search ]; then
    mkdir -p "$STORAGE"
    # shared=true: the local folder is on a file system all (fake) nodes share.
    "$PY" -m search.run space=augmentation budget=smoke address=auto gpus_per_trial=0.5 \
        storage="$STORAGE" name=autoscale-rehearsal shared=true &
else
    "$PY" - <<'EOF' &
# Four actors like Tune's trial actors: {"CPU": 1, "GPU": 0.5} each. The head offers neither, so
# they wait until the autoscaler has added GPU nodes.
import os
import time

import ray

ray.init(address="auto", log_to_driver=False)


@ray.remote(num_cpus=1, num_gpus=0.5)
class Probe:
    def where(self):
        time.sleep(15)  # hold the GPU share a while, as a trial would
        return (ray.get_runtime_context().get_node_id()[-5:], os.environ.get("RAY_NODE_TYPE_NAME", "?"),
                ray.get_gpu_ids())


t0 = time.time()
actors = [Probe.remote() for _ in range(4)]
for i, (node, node_type, gpus) in enumerate(ray.get([a.where.remote() for a in actors])):
    print(f"probe {i}: node ...{node} ({node_type}), logical GPU ids {gpus}")
print(f"probe done in {time.time() - t0:.0f} s")
ray.shutdown()
EOF
fi
DRIVER_PID=$!
wait "$DRIVER_PID"
DRIVER_PID=""
echo "workload finished in $((SECONDS - START)) s"
[ "$WORKLOAD" = search ] && echo "results and checkpoints: $STORAGE/autoscale-rehearsal"

log "ray status after the workload (idle GPU nodes stay for idle_timeout_minutes)"
"$RAY" status
N=$(gpu_nodes)
if [ "$N" -lt 1 ]; then
    echo "FAILED: no GPU node is active; see $WORK/ray/session_latest/logs/monitor.log (REHEARSAL_KEEP=1 keeps it)" >&2
    exit 1
fi
echo "OK: $N GPU node(s) were added by the autoscaler"

if [ "$SCALEDOWN" = 1 ]; then
    log "waiting for the idle GPU nodes to be removed (about 1 minute)"
    for _ in $(seq 60); do
        [ "$(gpu_nodes)" -eq 0 ] && break
        sleep 5
    done
    "$RAY" status
    if [ "$(gpu_nodes)" -ne 0 ]; then
        echo "FAILED: idle GPU nodes were not removed within 5 minutes" >&2
        exit 1
    fi
    echo "OK: the idle GPU nodes were removed"
fi
