#!/bin/bash
# Follow README's "Deployment under systemd" steps on this machine without changing it, as
# far as a machine where systemd is not PID 1 allows. Needs root, unshare and overlayfs.
#
#   sudo unshare -m --propagation private deploy/simulate-readme.sh
#
# In a private mount namespace, /etc, /opt, /srv and /var/lib get throw-away overlays. Steps
# 2-8 of README's first bash block then run verbatim from a fresh clone of this repository
# (step 1, apt-get, is skipped: it needs the network and the packages are expected to be
# installed; `sudo` is a stand-in when the machine has none). Steps 9-10 need systemd, so they
# are emulated: with /etc, /opt and /srv read-only (as ProtectSystem=strict leaves them), the
# unit's ExecStartPre= and one `run --once` run as user driftd, then `driftd status`.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d /tmp/driftd-sim.XXXXXX)
chmod 0755 "$work"
for d in etc opt srv var/lib; do
  n=${d//\//_}; mkdir -p "$work/$n-up" "$work/$n-work"
  mount -t overlay overlay -o "lowerdir=/$d,upperdir=$work/$n-up,workdir=$work/$n-work" "/$d"
done
mkdir "$work/bin"
if ! command -v sudo >/dev/null; then
  cat > "$work/bin/sudo" <<'SHIM'
#!/bin/bash
user=""; if [ "$1" = "-u" ]; then user="$2"; shift 2; fi
envs=(); while [[ "$1" == *=* && "$1" != -* ]]; do envs+=("$1"); shift; done
if [ -n "$user" ]; then exec runuser -u "$user" -- env "${envs[@]}" "$@"; fi
exec env "${envs[@]}" "$@"
SHIM
  chmod +x "$work/bin/sudo"
fi
git clone -q "$repo" "$work/clone" && cd "$work/clone"
python3 - > "$work/steps.sh" <<'PY'
import re
text = open("README.md").read().split("## Deployment under systemd")[1]
block = re.search(r"```bash\n(.*?)```", text, re.S).group(1)
steps = block.split("# 9.")[0]
print("set -ex\n" + "\n".join(l for l in steps.splitlines() if "apt-get" not in l))
PY
# A fresh Debian box has the system python3 first on PATH, not a per-user interpreter.
PATH="$work/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
  bash "$work/steps.sh" 2>&1 | cut -c1-200 | grep -v "^WARNING: Location\|Downloading\|━━"
test "${PIPESTATUS[0]}" = 0
echo "=== README steps 2-8 done; emulating steps 9-10 (the unit) ==="
for d in etc opt srv; do mount -o remount,ro "/$d"; done
cd /var/lib/driftd
driftd=(runuser -u driftd -- /opt/driftd/venv/bin/driftd --config /etc/driftd/config.toml)
"${driftd[@]}" config check --quiet
"${driftd[@]}" run --once > "$work/journal.txt" 2>&1
grep '"event": *"run.finished"\|"event":"run.finished"' "$work/journal.txt" || \
  python3 -c "import json,sys; [print(l, end='') for l in open(sys.argv[1]) if 'run.finished' in l]" "$work/journal.txt"
"${driftd[@]}" status
ls -l /var/lib/driftd/reports
