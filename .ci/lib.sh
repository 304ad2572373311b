# Shared by .ci/run and .ci/fresh-root.

# timed NAME COMMAND...: runs COMMAND between two log lines, the second with
# how long it took.
timed() {
  local name=$1 t0=$SECONDS
  shift
  echo "== $name"
  "$@"
  echo "== $name: done in $((SECONDS - t0)) s"
}
