#!/usr/bin/env bash
# probescope as a user gets it: packs the package (npm pack, which builds it), installs the tarball into a copy of
# examples/out-of-tree (a project of its own), builds its BPF object with `probescope bpf build`, type-checks it and
# runs its unit tests on the fake kernel; checks that a second copy of effect and an old Node are refused with a clear
# error; and, as root, runs the probe against its Go service through `probescope run --probe`. Bounded: each step has
# a time limit, about 5 minutes in all. KEEP=1 keeps the temporary directory.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/node_modules/.bin:$PATH:/usr/sbin"
say() { printf '[out-of-tree] %s\n' "$*" >&2; }
step() {
  local limit=$1
  shift
  local t0=$SECONDS
  say "$*"
  timeout --kill-after=10 "$limit" "$@"
  say "  ($((SECONDS - t0)) s)"
}

tmp=$(mktemp -d /tmp/probescope-out-of-tree.XXXXXX)
[ "${KEEP:-}" = 1 ] || trap 'rm -rf "$tmp"' EXIT

step 300 npm pack --silent --pack-destination "$tmp" >/dev/null
tarball=$(ls "$tmp"/probescope-*.tgz)
say "packed $(basename "$tarball") ($(du -h "$tarball" | cut -f1))"

project="$tmp/project"
tar -C examples/out-of-tree --exclude=node_modules --exclude=service/service --exclude='bpf/*.o' \
  --exclude=probescope.tgz --exclude=package-lock.json -cf - . | (mkdir -p "$project" && tar -C "$project" -xf -)
mv "$tarball" "$project/probescope.tgz"
cd "$project"

step 240 npm install --no-audit --no-fund --loglevel=error
# npm scripts run with node_modules/.bin first on PATH, so `node` there is the project's Node 24 (devDependency).
step 60 npm run --silent build:bpf
step 120 npm run --silent typecheck
step 180 npm test --silent

say "a second copy of effect is refused at import"
mkdir -p node_modules/probescope/node_modules
cp -r node_modules/effect node_modules/probescope/node_modules/effect
if out=$(node_modules/.bin/node -e 'await import("probescope")' --input-type=module 2>&1); then
  say "FAILED: probescope loaded beside a second copy of effect"
  exit 1
fi
grep -q "two copies of effect: probescope uses $project/node_modules/probescope/node_modules/effect" <<<"$out" || {
  say "FAILED: unexpected error: $out"
  exit 1
}
rm -rf node_modules/probescope/node_modules/effect

old_node=$(PATH=$(printf '%s' "$PATH" | tr ':' '\n' | grep -v node_modules | paste -sd:) command -v node || true)
new_enough='const [a, b] = process.versions.node.split(".").map(Number)
process.exit(a > 22 || (a === 22 && b >= 19) ? 0 : 1)'
if [ -n "$old_node" ] && ! "$old_node" -e "$new_enough"; then
  say "an old Node ($("$old_node" -v)) is refused at import, naming the version needed"
  if out=$("$old_node" --input-type=module -e 'await import("probescope")' 2>&1); then
    say "FAILED: probescope loaded on $("$old_node" -v)"
    exit 1
  fi
  grep -q "probescope needs Node >= 22.19 (Effect 4 does), but this is Node" <<<"$out" || {
    say "FAILED: unexpected error: $out"
    exit 1
  }
fi

if [ "$(id -u)" -eq 0 ]; then
  step 150 npm run --silent test:kernel
else
  say "not root: skipping the kernel run (npm run test:kernel)"
fi
say "passed"
