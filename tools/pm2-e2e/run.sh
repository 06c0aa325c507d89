#!/usr/bin/env bash
# Runs pm2's own end-to-end CLI scripts (test/e2e/ of a pm2 checkout) against this pyvm2.
#
#   tools/pm2-e2e/run.sh PM2_CHECKOUT [SCRIPT...]
#
# SCRIPT is a path under test/e2e (cli/reload.sh) or a bare name (reload); the default is every
# script of test/e2e/cli that skip.txt does not list. Environment:
#   PM2E2E_TIMEOUT  seconds per script (default 600)
#   PM2E2E_RESULTS  folder for the per-script logs (default: a new temporary folder, printed)
#   PM2E2E_STRICT=1 stop a script at its first failed assertion, as pm2's own include.sh does
#   PYTHON          the Python that runs pyvm2 (default python3)
set -u

usage() { sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
[ $# -ge 1 ] || usage
case "$1" in -h|--help) usage;; esac

PM2_SRC=$(cd "$1" 2>/dev/null && pwd) || { echo "error: $1: no such folder" >&2; exit 2; }
shift
[ -f "$PM2_SRC/test/e2e/include.sh" ] || {
  echo "error: $PM2_SRC is not a pm2 checkout (no test/e2e/include.sh)" >&2
  echo "hint: git clone https://github.com/Unitech/pm2 and pass its folder" >&2
  exit 2
}

HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
TIMEOUT=${PM2E2E_TIMEOUT:-600}
PYTHON=${PYTHON:-python3}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/pyvm2-pm2e2e.XXXXXX")
RESULTS=${PM2E2E_RESULTS:-$WORK/results}
mkdir -p "$RESULTS"

# pm2's scripts find `bin/pm2` relative to the folder they run from and write into the fixtures,
# so they run on a copy of the test folder, next to a `bin/pm2` that is this pyvm2.
cp -r "$PM2_SRC/test" "$WORK/test"
# Their scratch file is a fixed /tmp path; each run gets its own, so runs cannot mix.
grep -rl --include='*.sh' /tmp/tmp_out.txt "$WORK/test" | xargs -r sed -i "s#/tmp/tmp_out.txt#$WORK/tmp_out.txt#g"
mkdir -p "$WORK/bin"
cat > "$WORK/bin/pm2" <<EOF
#!/bin/sh
PYTHONPATH="$REPO\${PYTHONPATH:+:\$PYTHONPATH}" PYVM2_HOME="$WORK/home" exec "$PYTHON" -m pyvm2 "\$@"
EOF
chmod +x "$WORK/bin/pm2"

# The assertion helpers are redefined after pm2's own so a script goes on after a failure and
# every assertion is counted; a ✔ or ✘ line per assertion, as pm2 prints them.
cat >> "$WORK/test/e2e/include.sh" <<'EOF'

function fail {
  echo -e "######## ✘ $1"
  [ -n "${PM2E2E_STRICT:-}" ] && exit 1
  _PM2E2E_FAILED=1
  return 0
}
function success {
  if [ "${_PM2E2E_FAILED:-0}" = 1 ]; then _PM2E2E_FAILED=0; return 0; fi
  echo -e "------------> ✔ $1"
}
EOF

child=""
pm2_kill() { timeout 60 "$WORK/bin/pm2" kill >/dev/null 2>&1; }
cleanup() {
  [ -n "$child" ] && kill "$child" 2>/dev/null && wait "$child" 2>/dev/null
  pm2_kill
  rm -rf "$WORK/home" "$WORK/test" "$WORK/bin" "$WORK/tmp_out.txt"
  rmdir "$WORK" 2>/dev/null  # left only when it holds the logs
}
trap cleanup EXIT
trap 'exit 130' INT TERM

skip_reason() { awk -v p="$1" '!/^#/ && $1 == p { $1 = ""; sub(/^ +/, ""); print; exit }' \
  "$HERE/skip.txt"; }
known_reason() { awk -F' [|] ' -v p="$1" -v a="$2" '!/^#/ && $1 == p && $2 == a { print $3; exit }' \
  "$HERE/known.txt"; }

scripts=()
if [ $# -eq 0 ]; then
  for f in "$WORK"/test/e2e/cli/*.sh; do scripts+=("cli/$(basename "$f")"); done
else
  for s in "$@"; do
    case "$s" in */*) ;; *) s="cli/$s";; esac
    case "$s" in *.sh) ;; *) s="$s.sh";; esac
    [ -f "$WORK/test/e2e/$s" ] || { echo "error: no script test/e2e/$s in $PM2_SRC" >&2; exit 2; }
    scripts+=("$s")
  done
fi

export PATH="$WORK/bin:$PATH"
total_pass=0 total_fail=0 total_known=0 ran=0 skipped=0
printf '%-28s %5s %5s %6s  %s\n' script pass fail known note
for s in "${scripts[@]}"; do
  reason=$(skip_reason "$s")
  if [ -n "$reason" ] && [ $# -eq 0 ]; then
    printf '%-28s %5s %5s %6s  skipped: %s\n' "$s" - - - "$reason"
    skipped=$((skipped + 1))
    continue
  fi
  log="$RESULTS/$(echo "${s%.sh}" | tr / _).log"
  # `timeout` runs the script in a process group of its own; the trap stops it by its pid.
  (cd "$WORK" && exec timeout -k 10 "$TIMEOUT" bash "test/e2e/$s") >"$log" 2>&1 </dev/null &
  child=$!
  wait "$child"
  rc=$?
  child=""
  pm2_kill
  rm -rf "$WORK/home"
  pass=$(grep -c '^------------> ✔ ' "$log")
  fail=0 known=0 note=""
  while IFS= read -r line; do
    text=${line#*✘ }
    if [ -n "$(known_reason "$s" "$text")" ]; then known=$((known + 1)); else fail=$((fail + 1)); fi
  done < <(grep '^######## ✘ ' "$log")
  [ "$rc" = 124 ] && note="timed out after ${TIMEOUT}s"
  [ "$rc" != 0 ] && [ "$rc" != 124 ] && [ "$fail" = 0 ] && [ "$pass" = 0 ] && note="exit $rc"
  printf '%-28s %5d %5d %6d  %s\n' "$s" "$pass" "$fail" "$known" "$note"
  total_pass=$((total_pass + pass)) total_fail=$((total_fail + fail))
  total_known=$((total_known + known)) ran=$((ran + 1))
done
printf '%-28s %5d %5d %6d  %d scripts run, %d skipped\n' total "$total_pass" "$total_fail" \
  "$total_known" "$ran" "$skipped"
echo "logs: $RESULTS"
[ "$total_fail" = 0 ]
