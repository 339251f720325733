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
# Real servers the instrumentation tests start (database/sql against PostgreSQL, go-redis against Redis).
[ -x /usr/lib/postgresql/15/bin/postgres ] || need_pkgs+=(postgresql)
have_cmd redis-server || need_pkgs+=(redis-server)
# A real Apache Kafka broker for the kafka-go tests: Java from Debian runs it; Maven fetches its jars.
have_cmd java || need_pkgs+=(openjdk-17-jre-headless)
have_cmd mvn || need_pkgs+=(maven)
# A Go that understands GOTOOLCHAIN (>= 1.21) fetches whatever the Go programs' go.mod files ask for by itself.
usable_go() {
  local v
  v=$(go env GOVERSION 2>/dev/null) || return 1
  case "$v" in go1.[0-9] | go1.[0-9].* | go1.1[0-9] | go1.1[0-9].* | go1.20 | go1.20.* | "") return 1 ;; esac
}
# Debian's Go (1.19) is too old to build the project; it only fetches the wanted toolchain (see below).
gocache="${XDG_CACHE_HOME:-$HOME/.cache}/probescope/go"
usable_go || [ -x "$gocache/bin/go" ] || [ -x /usr/lib/go/bin/go ] || need_pkgs+=(golang-go)

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
# Without a Go on PATH: Debian's golang-go downloads the wanted toolchain as the module golang.org/toolchain (the
# zip GOTOOLCHAIN itself would fetch) through the go command's own default proxy and checksum settings, so this
# script names no download address. Debian's go predates GOTOOLCHAIN (Go 1.21), hence `go mod download`.
if ! usable_go; then
  if [ ! -x "$gocache/bin/go" ]; then
    v=1.26.8
    case "$(uname -m)" in x86_64) arch=amd64 ;; aarch64) arch=arm64 ;; *) arch=$(uname -m) ;; esac
    module="golang.org/toolchain@v0.0.1-go$v.linux-$arch"
    say "Go not found: fetching go$v (the module $module) with Debian's go into $gocache"
    tmp=$(mktemp -d)
    # Outside any module, with a module cache of its own: the unpacked toolchain is moved out of it below.
    dir=$(cd "$tmp" && GOMODCACHE="$tmp/mod" GOFLAGS=-modcacherw /usr/lib/go/bin/go mod download -json "$module" |
      sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p')
    [ -n "$dir" ] && [ -f "$dir/bin/go" ] || { say "go mod download $module did not unpack a toolchain"; exit 1; }
    mkdir -p "$(dirname "$gocache")"
    rm -rf "$gocache"
    mv "$dir" "$gocache"
    # Module zips carry no file modes.
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
