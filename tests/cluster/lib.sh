# The cluster tier's shared part (sourced by tests/cluster/run and scale).
# Everything goes through $KUBECTL (a kubeconfig's cluster) and the profile's
# hooks for what kubectl cannot do (load an image, act on a node's runtime,
# stop the API server). Profiles: tests/cluster/profiles/*.sh.

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
profile=${PODNET_CLUSTER_PROFILE:-kind}
case $profile in
  */*) . "$profile" ;;
  *) . "$here/profiles/$profile.sh" ;;
esac
: "${KUBECTL:=kubectl}"
: "${PROBE_IMAGE:=busybox:1.36}"
: "${PROBE_PULL:=IfNotPresent}"
NS=kube-system
PROBE_NS=podnet-cluster-test

k() { $KUBECTL "$@"; }
say() { printf '[%s] %s\n' "$(date +%T.%3N)" "$*"; }
ms() { date +%s%3N; }
secs() { awk -v a="$1" -v b="$(ms)" 'BEGIN { printf "%.2f", (b - a) / 1000 }'; }

passed=0
failed=0
pass() { passed=$((passed + 1)); say "PASS $*"; }
fail() { failed=$((failed + 1)); say "FAIL $*"; }
# check NAME COMMAND...: one named check, its output shown on failure.
check() {
  local name=$1 out
  shift
  if out=$("$@" 2>&1); then pass "$name"; else fail "$name: $(tail -5 <<<"$out")"; fi
}

# until_true SECONDS COMMAND...: polls every 0.2 s; false on timeout.
until_true() {
  local end=$(($(ms) + $1 * 1000))
  shift
  until "$@" >/dev/null 2>&1; do
    [ "$(ms)" -lt "$end" ] || return 1
    sleep 0.2
  done
}

nodes() { k get nodes -o jsonpath='{range .items[*]}{.metadata.name}{"\n"}{end}' | grep -v '^podnet-scale-' || true; }
node_ready() { [ "$(k get node "$1" -o 'jsonpath={.status.conditions[?(@.type=="Ready")].status}')" = "$2" ]; }
all_nodes_ready() { local n; for n in $(nodes); do node_ready "$n" True || return 1; done; }
pod_cidr() { k get node "$1" -o jsonpath='{.spec.podCIDR}'; }

# podnetd's pod on NODE, its container id (runtime's) and restart count.
podnetd_pod() {
  k -n $NS get pods -l app.kubernetes.io/name=podnet --field-selector "spec.nodeName=$1" \
    -o jsonpath='{.items[0].metadata.name}'
}
podnetd_ready_on() {
  local p
  p=$(podnetd_pod "$1") && [ -n "$p" ] &&
    [ "$(k -n $NS get pod "$p" -o 'jsonpath={.status.conditions[?(@.type=="Ready")].status}')" = True ]
}
podnetd_container() { k -n $NS get pod "$(podnetd_pod "$1")" -o jsonpath='{.status.containerStatuses[0].containerID}' | sed 's|.*://||'; }

# Routes podnetd owns on NODE (protocol 157), one a line.
routes_on() { node_sh "$1" ip route show proto 157; }
