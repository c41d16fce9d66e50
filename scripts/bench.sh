#!/usr/bin/env bash
# Runs the engine's benchmarks at full size (DELTADISK_BENCH_FULL=1) with the
# qcow2, cat and plain-file baselines they include, then prints a table of
# the figures, the ratios and the targets of DESIGN.md's cost table.
# The raw `go test -bench` output is kept in $BENCH_OUT (default: a new temp
# dir). Takes about 3 minutes on 2 vCPUs and needs about 10 GiB of free
# space in $TMPDIR and 6 GiB of free memory (page cache).
#
#   ./scripts/bench.sh                          # full sizes
#   DELTADISK_BENCH_FULL=0 ./scripts/bench.sh   # the small CI sizes, as a smoke test
#
# Time ratios come from sub-benchmarks that alternate the two candidates
# and compare median times, so a noisy neighbour hits both alike.
set -euo pipefail
cd "$(dirname "$0")/.."

export DELTADISK_BENCH_FULL=${DELTADISK_BENCH_FULL:-1}
out=${BENCH_OUT:-$(mktemp -d)}
mkdir -p "$out"
raw=$out/bench.txt
: >"$raw"

command -v qemu-img >/dev/null || echo "qemu-img missing (apt-get install qemu-utils): no qcow2 baseline" >&2

go test -c -o "$out/engine.test" ./internal/engine
cd internal/engine # where go test would run the binary

run() { # pattern benchtime
	echo "== $1 (benchtime $2)"
	"$out/engine.test" -test.run='^$' -test.bench="$1" -test.benchtime="$2" -test.timeout=0 | tee -a "$raw" | { grep -Ev '^(goos|goarch|pkg|cpu|PASS)' || true; }
}
run '^Benchmark(Snapshot|Diff)$' 2s
run '^BenchmarkIncrementalStorage$' 1x
run '^BenchmarkExport$' 5x
run '^BenchmarkDurableWrite$' 20x
# In a process of its own, so that the parent is small: the child's
# ru_maxrss includes the parent's peak (see BenchmarkExportRSS).
run '^BenchmarkExportRSS$' 3x

echo
echo "raw output: $raw"
echo
awk '
/^Benchmark/ {
	name = $1
	sub(/-[0-9]+$/, "", name)
	for (i = 3; i < NF; i += 2) v[name SUBSEP $(i + 1)] = $i
}
# get(re, unit): the value of unit in the first benchmark whose name matches re.
function get(re, unit,    k, p) {
	for (k in v) {
		split(k, p, SUBSEP)
		if (p[1] ~ re && p[2] == unit) return v[k]
	}
	return ""
}
function row(what, value, target, ok) {
	if (value == "") { value = "n/a"; ok = "" }
	printf "| %-58s | %-24s | %-8s | %-4s |\n", what, value, target, ok
}
function verdict(cond) { return cond ? "pass" : "FAIL" }
END {
	printf "| %-58s | %-24s | %-8s | %-4s |\n", "figure", "value", "target", ""
	printf "| %-58s | %-24s | %-8s | %-4s |\n", "---", "---", "---", "---"

	r = get("^BenchmarkSnapshot/ratio=", "ratio")
	row("snapshot, 1 TiB vs 1 GiB volume: time ratio", r, "<= 1.5", verdict(r <= 1.5))
	row("snapshot: median ms (1 GiB / 1 TiB)", get("^BenchmarkSnapshot/ratio=", "1GiB-ms") " / " get("^BenchmarkSnapshot/ratio=", "1TiB-ms"), "", "")
	a = get("^BenchmarkSnapshot/disk=1GiB/", "metaops/op"); b = get("^BenchmarkSnapshot/disk=1TiB/", "metaops/op")
	row("snapshot: metaops/op (1 GiB / 1 TiB)", a " / " b, "equal", verdict(a == b))

	r = get("^BenchmarkDiff/ratio=", "ratio")
	row("diff, 1 TiB vs 1 GiB volume: time ratio", r, "<= 2", verdict(r <= 2))
	row("diff: median ms (1 GiB / 1 TiB)", get("^BenchmarkDiff/ratio=", "1GiB-ms") " / " get("^BenchmarkDiff/ratio=", "1TiB-ms"), "", "")
	a = get("^BenchmarkDiff/disk=1GiB/", "metaops/op"); b = get("^BenchmarkDiff/disk=1TiB/", "metaops/op")
	row("diff: metaops/op (1 GiB / 1 TiB)", a " / " b, "equal", verdict(a == b))

	r = get("^BenchmarkIncrementalStorage/.*/writes=64KiB/.*/impl=engine$", "stored/changed")
	row("stored / changed, 64 KiB random writes (engine)", r, "<= 1.02", verdict(r <= 1.02))
	row("stored / changed, 64 KiB random writes (qcow2 overlay)", get("^BenchmarkIncrementalStorage/.*/writes=64KiB/.*/impl=qcow2$", "stored/changed"), "", "")
	row("stored / changed, 4 KiB random writes (engine)", get("^BenchmarkIncrementalStorage/.*/writes=4KiB/.*/impl=engine$", "stored/changed"), "report", "")
	row("  the same after GC (superseded chunks dropped)", get("^BenchmarkIncrementalStorage/.*/writes=4KiB/.*/impl=engine$", "afterGC/changed"), "report", "")
	row("stored / changed, 4 KiB random writes (qcow2 overlay)", get("^BenchmarkIncrementalStorage/.*/writes=4KiB/.*/impl=qcow2$", "stored/changed"), "report", "")

	re = "^BenchmarkExport/.*/ratio=engine:cat$"
	r = get(re, "ratio")
	row("VHD export vs cat of raw file: throughput ratio", r, ">= 0.5", verdict(r >= 0.5))
	row("export: median MB/s (engine / cat)", get(re, "engine-MB/s") " / " get(re, "cat-MB/s"), "", "")

	re = "^BenchmarkDurableWrite/.*/compare$"
	row("durable writes, 4 MiB WriteAt vs file fsync per 4 MiB", get(re, "ratio-4MiB"), "report", "")
	row("  median MB/s (engine / file)", get(re, "engine-4MiB-MB/s") " / " get(re, "file-sync4MiB-MB/s"), "", "")
	row("durable writes, 64 KiB WriteAt vs file fsync per 64 KiB", get(re, "ratio-64KiB"), "report", "")
	row("  median MB/s (engine / file)", get(re, "engine-64KiB-MB/s") " / " get(re, "file-sync64KiB-MB/s"), "", "")

	re = "^BenchmarkExportRSS/"
	r = get(re, "peak-RSS-MiB")
	row("peak RSS exporting 1 TiB sparse (MiB, child VmHWM)", r, "< 200", verdict(r != "" && r < 200))
	row("  child ru_maxrss (MiB) / export seconds", get(re, "maxrss-MiB") " / " get(re, "export-s"), "", "")
}' "$raw"
