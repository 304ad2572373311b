# Cluster profile: ../shared/kube-netns, a cluster whose nodes are network
# namespaces on this machine (real API server, kubelets, containerd). Its
# README says how to bring it up; this only drives it.
KN_HOME=${KN_HOME:-$(cd "$repo/../shared/kube-netns" && pwd)}
. "$KN_HOME/lib.sh"
KUBECTL="$KN_HOME/kc.sh"
PROBE_IMAGE=localhost/probe:1
PROBE_PULL=Never

_index() { echo "${1#node}"; }
# Before install: cri-sock.sh leaves each node's /run/containerd a private
# tmpfs; a real node's mounts are shared (systemd), which the DaemonSet's
# HostToContainer mount of /run/containerd needs (the kubelet refuses a
# private one). Made shared here, as on a real node.
prepare() {
  local i
  for i in $(seq "$(node_count)"); do in_node "$i" mount --make-rshared /run/containerd; done
}
load_image() { "$KN_HOME/load-image.sh" "$1"; }
node_sh() { local i; i=$(_index "$1"); shift; in_node "$i" "$@"; }
node_ctr() { local i; i=$(_index "$1"); shift; nctr "$i" "$@"; }
# The node's kubelet and containerd (its pods keep running).
runtime_stop() { "$KN_HOME/node-ctl.sh" stop "$(_index "$1")"; }
runtime_start() { "$KN_HOME/node-ctl.sh" start "$(_index "$1")"; }
# The API server, stopped by its pid file and started again with the
# command line it ran with.
api_stop() {
  local pid
  pid=$(pidfile_pid "$KN/run/kube-apiserver.pid") || return 1
  tr '\0' '\n' <"/proc/$pid/cmdline" >"$KN/run/kube-apiserver.cmdline"
  stop_pidfile "$KN/run/kube-apiserver.pid"
}
api_start() {
  local cmd
  mapfile -t cmd <"$KN/run/kube-apiserver.cmdline"
  launch kube-apiserver "$NS_CP" - "${cmd[@]}" 2>&1
}
