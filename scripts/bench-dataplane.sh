#!/usr/bin/env bash
# Runs the data-plane benchmark (BenchmarkDataPlane in
# cmd/deltadisk/bench_dataplane_test.go) at full size: the real binary
# against Azurite (the blob emulator, run on loopback with deltadisk's own
# TLS certificate) and against Go's http.ServeContent serving the same bytes
# from a page-cached file, then prints a table of the figures, the ratios and
# the targets of issue 4.
#
#   ./scripts/bench-dataplane.sh                          # full sizes, ~3 min
#   DELTADISK_BENCH_FULL=0 ./scripts/bench-dataplane.sh   # small sizes, a smoke test
#   AZURITE_MODE=disk ./scripts/bench-dataplane.sh        # Azurite on a temp dir, not in memory
#   DELTADISK_BENCH_PAR=16 ./scripts/bench-dataplane.sh   # requests in flight (default 8)
#
# Azurite is the npm package `azurite`, installed with npm on first use into
# $AZURITE_DIR (default ~/.cache/deltadisk/azurite-$AZURITE_VERSION, outside
# the repository), unless DELTADISK_BENCH_AZURITE already names an
# azurite-blob executable. It needs Node and npm. The raw `go test -bench`
# output is kept in $BENCH_OUT (default: a new temp dir). Needs about 6 GiB
# of free memory and 4 GiB of free space in $TMPDIR.
#
# Time ratios come from sub-benchmarks that alternate the candidates in one
# loop and compare median times, so a noisy neighbour hits all alike.
set -euo pipefail
cd "$(dirname "$0")/.."

export DELTADISK_BENCH_FULL=${DELTADISK_BENCH_FULL:-1}
export DELTADISK_BENCH_AZURITE_MODE=${AZURITE_MODE:-${DELTADISK_BENCH_AZURITE_MODE:-memory}}
# 3.35.0 is the newest release that runs on Node 20 (3.36 needs Node 22).
AZURITE_VERSION=${AZURITE_VERSION:-3.35.0}
AZURITE_DIR=${AZURITE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/deltadisk/azurite-$AZURITE_VERSION}

if [ -z "${DELTADISK_BENCH_AZURITE:-}" ]; then
	exe=$AZURITE_DIR/node_modules/.bin/azurite-blob
	if [ ! -x "$exe" ]; then
		command -v npm >/dev/null || { echo "npm not found: install Node.js and npm, or set DELTADISK_BENCH_AZURITE" >&2; exit 1; }
		echo "== installing azurite@$AZURITE_VERSION into $AZURITE_DIR"
		mkdir -p "$AZURITE_DIR"
		npm install --prefix "$AZURITE_DIR" --no-audit --no-fund --loglevel=error "azurite@$AZURITE_VERSION" >/dev/null
	fi
	export DELTADISK_BENCH_AZURITE=$exe
fi

out=${BENCH_OUT:-$(mktemp -d)}
mkdir -p "$out"
raw=$out/bench-dataplane.txt
: >"$raw"

go test -c -o "$out/deltadisk.test" ./cmd/deltadisk
cd cmd/deltadisk # where go test would run the binary (TestMain builds the server from here)

run() { # pattern benchtime
	echo "== $1 (benchtime $2)"
	"$out/deltadisk.test" -test.run='^$' -test.bench="$1" -test.benchtime="$2" -test.timeout=0 -test.v |
		tee -a "$raw" | { grep -Ev '^(goos|goarch|pkg|cpu|PASS|=== )' || true; }
}
run '^BenchmarkDataPlane$/^upload/' 5x
run '^BenchmarkDataPlane$/^download/' 5x
run '^BenchmarkDataPlane$/^pageranges/' 200x

echo
echo "raw output: $raw"
echo
awk '
/^BenchmarkDataPlane\// {
	name = $1
	sub(/-[0-9]+$/, "", name)
	n = split(name, p, "/")
	op = p[2]
	label[op] = p[3]
	for (i = 4; i < n; i++) label[op] = label[op] " " p[i] # the sizes, without "compare"
	for (i = 3; i < NF; i += 2) v[op SUBSEP $(i + 1)] = $i
}
/: HTTP\/1\.1, TLS/ { sub(/^ *bench_dataplane_test\.go:[0-9]+: /, ""); if (!(($0) in seen)) { seen[$0] = 1; tlsinfo = tlsinfo "  " $0 "\n" } }
/azurite [0-9.]+ \(/ { sub(/^ *bench_dataplane_test\.go:[0-9]+: /, ""); azinfo = $0 }
function get(op, unit) { return ((op SUBSEP unit) in v) ? v[op SUBSEP unit] : "" }
function row(what, value, target, ok) {
	if (value == "") { value = "n/a"; ok = "" }
	printf "| %-60s | %-28s | %-7s | %-4s |\n", what, value, target, ok
}
function verdict(cond) { return cond ? "pass" : "FAIL" }
END {
	printf "| %-60s | %-28s | %-7s | %-4s |\n", "figure", "value", "target", ""
	printf "| %-60s | %-28s | %-7s | %-4s |\n", "---", "---", "---", "---"
	r = get("upload", "ratio-azurite")
	row("upload (" label["upload"] "): deltadisk:Azurite", r, "> 1", verdict(r > 1))
	row("  MB/s (deltadisk / Azurite)", get("upload", "deltadisk-MB/s") " / " get("upload", "azurite-MB/s"), "", "")
	row("  server CPU ms per upload (deltadisk / Azurite)", get("upload", "deltadisk-cpu-ms") " / " get("upload", "azurite-cpu-ms"), "", "")
	r = get("download", "ratio-azurite")
	row("download (" label["download"] "): deltadisk:Azurite", r, "> 1", verdict(r > 1))
	r = get("download", "ratio-servecontent")
	row("download: deltadisk:ServeContent", r, ">= 0.7", verdict(r >= 0.7))
	row("  MB/s (deltadisk / Azurite / ServeContent)", get("download", "deltadisk-MB/s") " / " get("download", "azurite-MB/s") " / " get("download", "servecontent-MB/s"), "", "")
	row("  server CPU ms per download (same order)", get("download", "deltadisk-cpu-ms") " / " get("download", "azurite-cpu-ms") " / " get("download", "servecontent-cpu-ms"), "", "")
	r = get("pageranges", "ratio-azurite")
	row("Get Page Ranges (" label["pageranges"] "): deltadisk:Azurite", r, "> 1", verdict(r > 1))
	row("  ms (deltadisk / Azurite)", get("pageranges", "deltadisk-ms") " / " get("pageranges", "azurite-ms"), "", "")
	printf "\nratios: above 1 means deltadisk is faster (throughput ratio, or time ratio inverted)\n"
	if (azinfo != "") printf "%s\n", azinfo
	printf "%s", tlsinfo
}' "$raw"
