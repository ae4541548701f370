# Sourced by launch/demo.sh and launch/downstream.sh: `stage NAME COMMAND...` runs COMMAND unless
# $stage_dir/.done-NAME says it finished before; on success it writes the seconds it took there.
# A failed or interrupted command leaves no marker, so the next run redoes that stage.
stage() {
  local name=$1; shift
  if [ -f "$stage_dir/.done-$name" ]; then
    echo "== $name: done before, reused (delete $stage_dir/.done-$name to redo)"
    return
  fi
  echo "== $name"
  local t0; t0=$(date +%s)
  "$@"
  echo "$(( $(date +%s) - t0 ))" > "$stage_dir/.done-$name"
}
