#!/usr/bin/env bash
# One idempotent set-up for a fresh Debian 12 machine: system packages, Go, npm packages (which bring Node 24),
# the native addon and the BPF objects. Both README commands and CI call it; a second run does almost nothing.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '[setup] %s\n' "$*" >&2; }

# --- system packages ------------------------------------------------------------------------------------------
need_pkgs=()
have_cmd() { command -v "$1" >/dev/null 2>&1; }
have_cmd clang || need_pkgs+=(clang)
have_cmd llvm-strip || need_pkgs+=(llvm)
{ have_cmd bpftool || [ -x /usr/sbin/bpftool ]; } || need_pkgs+=(bpftool)
[ -f /usr/include/bpf/libbpf.h ] || need_pkgs+=(libbpf-dev)
[ -f /usr/include/libelf.h ] || need_pkgs+=(libelf-dev)
[ -f /usr/include/zlib.h ] || need_pkgs+=(zlib1g-dev)
have_cmd make || need_pkgs+=(make)
have_cmd g++ || need_pkgs+=(g++)
have_cmd python3 || need_pkgs+=(python3)
have_cmd curl || need_pkgs+=(curl)
have_cmd unzip || need_pkgs+=(unzip)

if [ ${#need_pkgs[@]} -gt 0 ]; then
  if [ "$(id -u)" -eq 0 ] && have_cmd apt-get; then
    say "installing ${need_pkgs[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_pkgs[@]}" >/dev/null
  else
    say "missing system packages: ${need_pkgs[*]}"
    say "install them as root: apt-get update && apt-get install -y ${need_pkgs[*]}"
    exit 1
  fi
fi
export PATH="$PATH:/usr/sbin"

# --- Go (tests and the demo build Go programs; other versions come through GOTOOLCHAIN) ---------------------------
if ! have_cmd go; then
  gocache="${XDG_CACHE_HOME:-$HOME/.cache}/probescope/go"
  if [ ! -x "$gocache/bin/go" ]; then
    # The module proxy serves Go toolchains as modules; this is the same zip GOTOOLCHAIN downloads.
    v=1.26.8
    say "Go not found: fetching go$v from the Go module proxy into $gocache"
    tmp=$(mktemp -d)
    curl -fsSL -o "$tmp/go.zip" "https://proxy.golang.org/golang.org/toolchain/@v/v0.0.1-go$v.linux-amd64.zip"
    mkdir -p "$(dirname "$gocache")"
    unzip -q "$tmp/go.zip" -d "$tmp"
    rm -rf "$gocache"
    mv "$tmp/golang.org/toolchain@v0.0.1-go$v.linux-amd64" "$gocache"
    chmod +x "$gocache"/bin/* "$gocache"/pkg/tool/*/* 2>/dev/null || true
    rm -rf "$tmp"
  fi
  export PATH="$gocache/bin:$PATH"
  say "using $(go version)"
fi

# --- npm packages (the `node` package brings Node 24; the system Node may be older) -----------------------------
if [ ! -x node_modules/.bin/node ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  say "installing npm packages"
  npm ci --no-audit --no-fund --loglevel=error
fi
node_ver=$(node_modules/.bin/node -p 'process.versions.node')
say "node $node_ver (node_modules/.bin/node)"

# --- native addon and BPF objects (both builds skip work that is up to date) -------------------------------------
PATH="$PWD/node_modules/.bin:$PATH" npm run --silent build >&2
