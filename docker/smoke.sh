#!/usr/bin/env bash
# Docker smoke test of the deployment, end to end on a real Docker engine:
#   install docker.io / docker-compose / debootstrap when missing, start dockerd when none runs,
#   build the local base image (docker/base-image.sh, cached) and the serving image (docker/Dockerfile,
#   target serve), bring up the CPU variant of the compose stack (service + nginx + Prometheus; Grafana
#   is left out here because no registry or Debian package provides it offline), POST a generated video
#   through the load balancer, check through Prometheus's HTTP API that every target is up and that
#   fstcn_requests_total counted the request, scale the service to 2 replicas and check both answer,
#   and tear everything down.
# Ends with `docker smoke: N passed, M failed`; exits non-zero on any failure. It skips (exit 0) only
# when dockerd cannot start on this machine, and says why.
#
# Environment:
#   FSTCN_SMOKE_MODEL   an ONNX model to serve instead of the shipped models/fstcn-small.onnx (mounted
#                       as a custom model, exercising FSTCN_MODEL_DIR/FSTCN_MODEL_FILE)
#   SMOKE_PORT, SMOKE_PROMETHEUS_PORT   host ports (default 18000, 19090: clear of a dev server on 8000)
#   SMOKE_KEEP=1        leave the stack running at the end (for debugging)
#   SMOKE_IMAGE_ARGS    extra `docker build` arguments for the serving image
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
ROOT=$(pwd)

PROJECT=fstcn-smoke
SERVE_IMAGE=fstcn:smoke
BASE_IMAGE=fstcn-base:bookworm
PORT=${SMOKE_PORT:-18000}
PROM_PORT=${SMOKE_PROMETHEUS_PORT:-19090}
LB=http://127.0.0.1:$PORT
PROM=http://127.0.0.1:$PROM_PORT
WORK=$(mktemp -d /tmp/fstcn-smoke.XXXXXX)
chmod 755 "$WORK"
HOST_CA=docker/certs/smoke-host-ca.crt
STARTED_DOCKERD_PID=
PASSED=0
FAILED=0
T0=$SECONDS

log() { printf '[%4ds] %s\n' $((SECONDS - T0)) "$*"; }
pass() { PASSED=$((PASSED + 1)); log "PASS $*"; }
fail() { FAILED=$((FAILED + 1)); log "FAIL $*"; }
# check NAME COMMAND...: runs the command, counts a pass or a failure.
check() {
    local name=$1
    shift
    if "$@" >"$WORK/check.out" 2>&1; then
        pass "$name"
    else
        fail "$name"
        sed 's/^/      /' "$WORK/check.out" | tail -20
    fi
}
# wait_for SECONDS COMMAND...: retries the command every 2 s until it succeeds or time runs out.
wait_for() {
    local deadline=$((SECONDS + $1))
    shift
    until "$@" >"$WORK/wait.out" 2>&1; do
        if ((SECONDS >= deadline)); then
            cat "$WORK/wait.out"
            return 1
        fi
        sleep 2
    done
    cat "$WORK/wait.out"
}

summary() {
    echo "docker smoke: $PASSED passed, $FAILED failed"
}

# ------------------------------------------------------------------------------------------- tools
export DEBIAN_FRONTEND=noninteractive
need=()
command -v dockerd >/dev/null || need+=(docker.io)
command -v debootstrap >/dev/null || need+=(debootstrap)
command -v curl >/dev/null || need+=(curl)
if ! command -v docker-compose >/dev/null && ! docker compose version >/dev/null 2>&1; then
    need+=(docker-compose)
fi
if ((${#need[@]})); then
    log "installing ${need[*]}"
    if ! { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${need[@]}"; } \
        >"$WORK/apt.log" 2>&1; then
        tail -20 "$WORK/apt.log"
        if ! command -v dockerd >/dev/null; then
            echo "docker smoke: SKIPPED: dockerd cannot start: docker.io could not be installed"
            exit 0
        fi
        fail "install ${need[*]}"
        summary
        exit 1
    fi
fi

# ------------------------------------------------------------------------------------------- dockerd
if ! docker info >/dev/null 2>&1; then
    log "starting dockerd"
    setsid dockerd >"$WORK/dockerd.log" 2>&1 </dev/null &
    STARTED_DOCKERD_PID=$!
    for _ in $(seq 60); do
        docker info >/dev/null 2>&1 && break
        kill -0 "$STARTED_DOCKERD_PID" 2>/dev/null || break
        sleep 1
    done
    if ! docker info >/dev/null 2>&1; then
        echo "dockerd log (last lines):"
        tail -15 "$WORK/dockerd.log"
        kill "$STARTED_DOCKERD_PID" 2>/dev/null
        echo "docker smoke: SKIPPED: dockerd cannot start on this machine (see its log above)"
        exit 0
    fi
fi
log "docker $(docker version -f '{{.Server.Version}}' 2>/dev/null) running"

if docker compose version >/dev/null 2>&1; then
    COMPOSE=(docker compose)
else
    COMPOSE=(docker-compose)
fi
COMPOSE+=(-p "$PROJECT" -f docker/docker-compose.yml -f docker/docker-compose.cpu.yml)

# The classic builder: it needs no buildx plugin and works with any daemon; the Dockerfile needs no
# BuildKit feature.
export DOCKER_BUILDKIT=0 COMPOSE_DOCKER_CLI_BUILD=0

cleanup() {
    if [[ "${SMOKE_KEEP:-0}" == 1 ]]; then
        log "SMOKE_KEEP=1: stack left running (${COMPOSE[*]} down -v to remove it)"
    else
        "${COMPOSE[@]}" down -v --remove-orphans >"$WORK/down.log" 2>&1 || tail -5 "$WORK/down.log"
    fi
    rm -f "$HOST_CA"
    if [[ -n "$STARTED_DOCKERD_PID" && "${SMOKE_KEEP:-0}" != 1 ]]; then
        kill "$STARTED_DOCKERD_PID" 2>/dev/null
        wait "$STARTED_DOCKERD_PID" 2>/dev/null
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ------------------------------------------------------------------------------------------- images
log "base image"
check "base image $BASE_IMAGE (debootstrap + docker import, cached)" docker/base-image.sh "$BASE_IMAGE"

# pip in the build trusts the network's TLS only with the host's CA bundle (TLS-inspecting proxies):
# the Dockerfile's extra-CA input, docker/certs/*.crt.
if [[ -f /etc/ssl/certs/ca-certificates.crt ]]; then
    cp /etc/ssl/certs/ca-certificates.crt "$HOST_CA"
fi

log "building $SERVE_IMAGE"
# shellcheck disable=SC2086
check "serving image builds (target serve)" \
    docker build --network host -f docker/Dockerfile --target serve \
    --build-arg BASE_IMAGE="$BASE_IMAGE" ${SMOKE_IMAGE_ARGS:-} -t "$SERVE_IMAGE" .
if ! docker image inspect "$SERVE_IMAGE" >/dev/null 2>&1; then
    summary
    exit 1
fi
size=$(docker image inspect -f '{{.Size}}' "$SERVE_IMAGE")
log "serving image size: $(awk -v s="$size" 'BEGIN { printf "%.2f GB (%.0f bytes)", s / 1e9, s }')"
check "serving image runs as a non-root user" \
    bash -c "[[ \$(docker image inspect -f '{{.Config.User}}' $SERVE_IMAGE) =~ ^(fstcn|10001)$ ]]"
check "serving image has a HEALTHCHECK on /readyz" \
    bash -c "docker image inspect -f '{{json .Config.Healthcheck}}' $SERVE_IMAGE | grep -q /readyz"
check "serving image: no torch, onnxruntime-gpu with CUDA and CPU providers" \
    docker run --rm --entrypoint python3 "$SERVE_IMAGE" -c '
import importlib.util, onnxruntime as ort
assert importlib.util.find_spec("torch") is None, "torch is installed"
providers = ort.get_available_providers()
print(ort.__version__, providers)
assert "CUDAExecutionProvider" in providers and "CPUExecutionProvider" in providers, providers'

# No GPU here, but the CUDA provider's libraries (cuDNN, cuBLAS, cuFFT, cuRAND, cudart from the pip
# wheels) must all resolve through the loader config; only the driver's libcuda comes from the host.
# shellcheck disable=SC2016
check "serving image: the CUDA provider's shared libraries all resolve (ldd)" \
    docker run --rm --entrypoint sh "$SERVE_IMAGE" -c '
lib=$(ls /opt/venv/lib/python3*/site-packages/onnxruntime/capi/libonnxruntime_providers_cuda.so) &&
ldd "$lib" | grep -E "cudnn|cublas|cudart|not found" && ! ldd "$lib" | grep -q "not found" &&
ldd "$lib" | grep -q "libcudnn.so.9 => /opt/venv"'

log "building the Prometheus and nginx stand-ins (Debian packages)"
for target in prometheus nginx; do
    check "local $target image" docker build --network host --build-arg BASE_IMAGE="$BASE_IMAGE" \
        --target "$target" -t "fstcn-smoke/$target" docker/smoke
done

# ------------------------------------------------------------------------------------------- model + video
if [[ -n "${FSTCN_SMOKE_MODEL:-}" ]]; then
    MODEL_DIR=$(cd "$(dirname "$FSTCN_SMOKE_MODEL")" && pwd)
    MODEL_FILE=$(basename "$FSTCN_SMOKE_MODEL")
    log "serving the custom model $MODEL_DIR/$MODEL_FILE"
else
    MODEL_DIR=$ROOT/models
    MODEL_FILE=fstcn-small.onnx
    check "shipped default model models/$MODEL_FILE present" test -s "$MODEL_DIR/$MODEL_FILE"
fi

# A 3 s test video, made inside the serving image (PyAV) with the repository's tests/videos.py.
check "test video generated" docker run --rm --user "$(id -u)" --entrypoint python3 \
    -v "$ROOT/tests:/src/tests:ro" -v "$WORK:/out" -w /src "$SERVE_IMAGE" -c '
from tests.videos import write_video
write_video("/out/video.mp4", fps=25, seconds=3, width=320, height=240)'
printf 'this is not a video\n' >"$WORK/not-a-video.txt"

# ------------------------------------------------------------------------------------------- stack up
export FSTCN_IMAGE=$SERVE_IMAGE BASE_IMAGE
export PROMETHEUS_IMAGE=fstcn-smoke/prometheus NGINX_IMAGE=fstcn-smoke/nginx
export FSTCN_PORT=$PORT PROMETHEUS_PORT=$PROM_PORT GRAFANA_PORT=${SMOKE_GRAFANA_PORT:-13000}
export FSTCN_MODEL_DIR=$MODEL_DIR FSTCN_MODEL_FILE=$MODEL_FILE
export FSTCN_INTRA_OP_THREADS=1 FSTCN_LOG_FORMAT=text FSTCN_API_KEY=

"${COMPOSE[@]}" down -v --remove-orphans >/dev/null 2>&1
log "compose up (CPU variant): fstcn nginx prometheus"
check "compose up -d" "${COMPOSE[@]}" up -d --no-build fstcn nginx prometheus

healthy_replicas() {
    local ids
    ids=$("${COMPOSE[@]}" ps -q fstcn)
    [[ -n "$ids" ]] || return 1
    # shellcheck disable=SC2086
    docker inspect -f '{{.State.Health.Status}}' $ids
}
all_healthy() {
    local want=$1 states
    states=$(healthy_replicas) || return 1
    echo "$states"
    [[ $(grep -c '^healthy$' <<<"$states") -eq $want ]]
}
check "service container healthy (/readyz via HEALTHCHECK)" wait_for 240 all_healthy 1
if ((FAILED)); then
    "${COMPOSE[@]}" logs --tail 40 fstcn
fi
check "load balancer answers /readyz" wait_for 60 curl -fsS "$LB/readyz"

# ------------------------------------------------------------------------------------------- predict
predict_ok() {
    local code
    code=$(curl -sS -o "$WORK/predict.json" -w '%{http_code}' -F "file=@$WORK/video.mp4;type=video/mp4" \
        "$LB/predict?top_k=3")
    echo "HTTP $code"
    head -c 600 "$WORK/predict.json"
    echo
    [[ $code == 200 ]] && python3 -c '
import json, sys
body = json.load(open(sys.argv[1]))
assert len(body["predictions"]) == 3, body["predictions"]
assert body["clips"] and body["video"]["frames"] > 0 and body["model"]["name"]
scores = [p["score"] for p in body["predictions"]]
assert scores == sorted(scores, reverse=True), scores
print("top-1:", body["predictions"][0]["label"], round(scores[0], 3))' "$WORK/predict.json"
}
check "POST /predict through the load balancer: 200 with ranked predictions" predict_ok

bad_request_rejected() {
    local code
    code=$(curl -sS -o "$WORK/bad.json" -w '%{http_code}' -F "file=@$WORK/not-a-video.txt" "$LB/predict")
    echo "HTTP $code $(cat "$WORK/bad.json")"
    [[ $code == 415 ]] && grep -q '"code":"unsupported_media"' "$WORK/bad.json" && curl -fsS "$LB/readyz"
}
check "a non-video upload gets 415 unsupported_media and the service stays ready" bad_request_rejected

# ------------------------------------------------------------------------------------------- prometheus
# prom_query EXPR: prints the query's vector as "labels value" lines.
prom_query() {
    curl -fsS --get "$PROM/api/v1/query" --data-urlencode "query=$1" | python3 -c '
import json, sys
data = json.load(sys.stdin)["data"]["result"]
for item in data:
    print(item["metric"], item["value"][1])'
}
targets_up() {
    local want=$1
    curl -fsS "$PROM/api/v1/targets?state=active" | python3 -c '
import json, sys
want = int(sys.argv[1])
targets = json.load(sys.stdin)["data"]["activeTargets"]
for t in targets:
    print(t["labels"]["job"], t["scrapeUrl"], t["health"], t.get("lastError", ""))
fstcn = [t for t in targets if t["labels"]["job"] == "fstcn"]
assert len(fstcn) == want, f"{len(fstcn)} fstcn targets, want {want}"
assert targets and all(t["health"] == "up" for t in targets), "not every target is up"' "$want"
}
requests_counted() {
    local out
    out=$(prom_query 'sum(fstcn_requests_total{route="/predict",status="200"})')
    echo "$out"
    python3 -c 'import sys; assert float(sys.argv[1].split()[-1]) >= 1' "${out:-none 0}"
}
check "Prometheus: every target up (1 fstcn replica found by DNS, prometheus itself)" \
    wait_for 90 targets_up 1
check "Prometheus: fstcn_requests_total counted the /predict request" wait_for 60 requests_counted

# Every query of the Grafana dashboard is valid PromQL and evaluates without error.
dashboard_queries_ok() {
    python3 - "$PROM" docker/grafana/dashboards/fstcn.json <<'PY'
import json, sys, urllib.parse, urllib.request
prom, path = sys.argv[1], sys.argv[2]
panels = json.load(open(path))["panels"]
bad = 0
for panel in panels:
    for target in panel["targets"]:
        expr = target["expr"].replace("$__rate_interval", "1m")
        url = prom + "/api/v1/query?" + urllib.parse.urlencode({"query": expr})
        try:
            body = json.load(urllib.request.urlopen(url, timeout=10))
            ok = body["status"] == "success"
        except Exception as error:  # HTTP 400 = a bad query
            ok, body = False, str(error)
        if not ok:
            bad += 1
            print("bad query in panel", repr(panel["title"]), ":", expr, body)
print(sum(len(p["targets"]) for p in panels), "queries,", bad, "bad")
sys.exit(bad > 0)
PY
}
check "every Grafana dashboard query evaluates in Prometheus" dashboard_queries_ok

# ------------------------------------------------------------------------------------------- scale out
log "scaling fstcn to 2 replicas"
if [[ ${COMPOSE[0]} == docker-compose ]]; then
    scale=("${COMPOSE[@]}" up -d --no-build --no-recreate --scale fstcn=2 fstcn)
else
    scale=("${COMPOSE[@]}" up -d --no-build --no-recreate --scale fstcn=2 fstcn nginx prometheus)
fi
check "compose up --scale fstcn=2" "${scale[@]}"
check "2 service containers healthy" wait_for 240 all_healthy 2
check "Prometheus: 2 fstcn replicas discovered and up" wait_for 90 targets_up 2

# Both replicas answer through the load balancer: nginx reports the replica it used (X-Upstream-Addr).
two_replicas_answer() {
    : >"$WORK/upstreams"
    for _ in $(seq 40); do
        curl -fsS -D - -o /dev/null "$LB/v1/model" | tr -d '\r' |
            awk 'tolower($1) == "x-upstream-addr:" { print $2 }' >>"$WORK/upstreams" || return 1
    done
    sort "$WORK/upstreams" | uniq -c
    [[ $(sort -u "$WORK/upstreams" | wc -l) -ge 2 ]]
}
check "both replicas answer through the load balancer" wait_for 30 two_replicas_answer

# And each replica serves a real prediction when addressed directly (from inside the compose network).
predict_each_replica() {
    local id addr code status=0
    for id in $("${COMPOSE[@]}" ps -q fstcn); do
        addr=$(docker inspect -f '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}' "$id")
        code=$(curl -sS -o /dev/null -w '%{http_code}' --max-time 120 \
            -F "file=@$WORK/video.mp4;type=video/mp4" "http://$addr:8000/predict?crops=1") || code=000
        echo "replica $addr: HTTP $code"
        [[ $code == 200 ]] || status=1
    done
    return $status
}
if docker inspect -f '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}' \
    "$("${COMPOSE[@]}" ps -q fstcn | head -1)" | xargs -r -I{} curl -fsS --max-time 3 http://{}:8000/healthz \
    >/dev/null 2>&1; then
    check "each replica answers POST /predict directly" predict_each_replica
    per_replica_counted() {
        local out
        out=$(prom_query 'count(sum by (instance) (fstcn_requests_total{route="/predict",status="200"}) >= 1)')
        echo "$out"
        python3 -c 'import sys; assert float(sys.argv[1].split()[-1]) >= 2' "${out:-none 0}"
    }
    check "Prometheus: each replica's own fstcn_requests_total counted its request" \
        wait_for 60 per_replica_counted
else
    log "container addresses are not reachable from the host: direct per-replica checks left out"
fi

# ------------------------------------------------------------------------------------------- down
log "tearing down"
if [[ "${SMOKE_KEEP:-0}" != 1 ]]; then
    check "compose down -v" "${COMPOSE[@]}" down -v --remove-orphans
    check "no container of the stack left" bash -c "[[ -z \$(docker ps -aq --filter label=com.docker.compose.project=$PROJECT) ]]"
fi
log "done in $((SECONDS - T0)) s"
summary
((FAILED == 0))
