# Cluster profile: kind (docker), as README's kind section creates it
# (deploy/install-kind, cluster name podnet). Not run on the machines this
# project is built on (no Docker engine there): written to kind's layout.
KIND_CLUSTER=${KIND_CLUSTER:-podnet}
KUBECTL="kubectl --context kind-$KIND_CLUSTER"

prepare() { :; }
load_image() { kind load image-archive "$1" --name "$KIND_CLUSTER"; }
node_sh() { local n=$1; shift; docker exec "$n" "$@"; }
node_ctr() { local n=$1; shift; docker exec "$n" ctr -n k8s.io "$@"; }
runtime_stop() { docker exec "$1" systemctl stop kubelet containerd; }
runtime_start() { docker exec "$1" systemctl start containerd kubelet; }
# kind's API server is a static pod: moving its manifest away stops it.
api_stop() {
  docker exec "$KIND_CLUSTER-control-plane" \
    mv /etc/kubernetes/manifests/kube-apiserver.yaml /etc/kubernetes/kube-apiserver.yaml.stopped
  sleep 20
}
api_start() {
  docker exec "$KIND_CLUSTER-control-plane" \
    mv /etc/kubernetes/kube-apiserver.yaml.stopped /etc/kubernetes/manifests/kube-apiserver.yaml
}
