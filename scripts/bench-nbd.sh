#!/usr/bin/env bash
# Compares deltadisk's attached disk over NBD with qemu-nbd serving a fresh
# qcow2 image (`qemu-nbd -t -f qcow2 --cache=writeback`, the hypervisor's
# usual setting), both driven by fio's libnbd engine over loopback TCP
# (DESIGN.md, "The write path": the peers to measure against).
#
#   ./scripts/bench-nbd.sh                                      # 5 runs x 30 s per job and target, ~30 min
#   BENCH_NBD_RUNTIME=5 BENCH_NBD_RUNS=1 ./scripts/bench-nbd.sh # a smoke test, ~2 min
#   BENCH_NBD_JOBS="randwrite-4k seqread-1m" ./scripts/bench-nbd.sh  # some jobs only
#
# The jobs, on a 1 GiB disk (BENCH_NBD_SIZE), all with --refill_buffers:
#   randwrite-4k   4 KiB random writes, iodepth 16, --fsync=32 (an NBD FLUSH every 32 writes)
#   randwrite-64k  64 KiB random writes, iodepth 16, --fsync=32
#   seqwrite-1m    1 MiB sequential writes, iodepth 8, --fsync=16
#   randread-4k    4 KiB random reads, iodepth 16, on a disk filled first
#   seqread-1m     1 MiB sequential reads, iodepth 8, on a disk filled first
# Every run is time_based (BENCH_NBD_RUNTIME seconds, default 30) on fresh
# state: a new data dir, server and disk for deltadisk, a new qcow2 image and
# qemu-nbd for the peer. The read jobs first fill the disk with a sequential
# 1 MiB write pass ending in a flush, not timed. The two targets alternate,
# and swap which goes first every run, so that a noisy neighbour hits both.
#
# It prints one markdown table: per job the median over BENCH_NBD_RUNS runs
# (default 5) of IOPS (4 KiB and 64 KiB jobs) or MiB/s (1 MiB jobs) for
# deltadisk and for qemu-nbd, and their ratio (above 1: deltadisk is faster),
# followed by the git commit measured and, per write job, the writes per NBD
# FLUSH that fio actually sent. fio 3.33 does not send exactly one flush per
# --fsync writes with a queue depth above 1: once the count is reached it
# fills every slot that frees up with another flush until one completes, so
# a target that completes writes while a flush is pending gets more flushes
# (and fewer writes in flight). Read the ratio with that line. The raw fio
# JSON of every run (fio's "connected to NBD server" line stripped) and the
# servers' logs stay in BENCH_NBD_OUT (default: a new temp dir, named at the
# start and the end). Data dirs and images are deleted after each run. Needs
# fio with the nbd engine, qemu-utils (qemu-img, qemu-nbd), libnbd-bin
# (nbdinfo), jq and Go; on Debian, run as root, it installs the first three
# when missing. Everything listens on 127.0.0.1 only and is stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."

runtime=${BENCH_NBD_RUNTIME:-30}
runs=${BENCH_NBD_RUNS:-5}
size=${BENCH_NBD_SIZE:-1G} # qemu-img and fio both read the suffix as a power of 2
jobs=${BENCH_NBD_JOBS:-randwrite-4k randwrite-64k seqwrite-1m randread-4k seqread-1m}
out=${BENCH_NBD_OUT:-$(mktemp -d "${TMPDIR:-/tmp}/bench-nbd.XXXXXX")}
mkdir -p "$out"
echo "== raw fio JSON and logs: $out" >&2

need=()
command -v fio >/dev/null || need+=(fio)
command -v qemu-nbd >/dev/null || need+=(qemu-utils)
command -v nbdinfo >/dev/null || need+=(libnbd-bin)
command -v jq >/dev/null || need+=(jq)
if [ ${#need[@]} -gt 0 ]; then
	[ "$(id -u)" = 0 ] || { echo "missing ${need[*]}: install them (apt-get install -y ${need[*]})" >&2; exit 1; }
	echo "== installing ${need[*]}" >&2
	apt-get install -y "${need[@]}" >/dev/null
fi
fio --enghelp=nbd >/dev/null 2>&1 || { echo "this fio has no nbd engine (Debian's fio 3.33 has it)" >&2; exit 1; }

commit=$(git describe --always --dirty 2>/dev/null || echo unknown)
go build -o "$out/deltadisk" ./cmd/deltadisk
dd=$out/deltadisk

# The processes this script started, stopped on exit whatever happens.
dd_pid= qemu_pid=
stop_dd() { # SIGTERM: the server drains and exits 0
	[ -n "$dd_pid" ] || return 0
	kill "$dd_pid" 2>/dev/null || true
	wait "$dd_pid" || echo "deltadisk serve exited with $?" >&2
	dd_pid=
}
stop_qemu() { # qemu-nbd forked a daemon, not our child: poll for its end
	[ -n "$qemu_pid" ] || return 0
	if kill "$qemu_pid" 2>/dev/null; then
		for _ in $(seq 100); do kill -0 "$qemu_pid" 2>/dev/null || break; sleep 0.1; done
		kill -9 "$qemu_pid" 2>/dev/null || true
	fi
	qemu_pid=
}
cleanup() {
	stop_dd
	stop_qemu
	rm -rf "$out/dd-data" "$out/disk.qcow2" "$out/dd.attach.json"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# start_deltadisk leaves a fresh server with one attached disk of $size,
# its pid in dd_pid and the export's URI in uri.
start_deltadisk() {
	local data=$out/dd-data log=$out/deltadisk-$1.log
	rm -rf "$data"
	# Port 0 on both listeners: the server picks free ports, credentials.json
	# names the HTTPS one and the attach answer the NBD one.
	"$dd" serve --data-dir "$data" --listen 127.0.0.1:0 --nbd-listen 127.0.0.1:0 2>"$log" &
	dd_pid=$!
	for _ in $(seq 300); do
		grep -q '^deltadisk serving ' "$log" && break
		kill -0 "$dd_pid" 2>/dev/null || { cat "$log" >&2; echo "deltadisk serve exited" >&2; exit 1; }
		sleep 0.1
	done
	grep -q '^deltadisk serving ' "$log" || { echo "deltadisk serve did not start in 30 s (log: $log)" >&2; exit 1; }
	local c=(--data-dir "$data" --only-show-errors)
	"$dd" group create -n bench -l eastus "${c[@]}" -o none
	"$dd" disk create -g bench -n disk --size-gb $(($(numfmt --from=iec "$size") >> 30)) "${c[@]}" -o none
	"$dd" disk attach -g bench -n disk "${c[@]}" >"$out/dd.attach.json"
	uri=$(jq -r .nbdUri "$out/dd.attach.json")
}

# start_qemu leaves qemu-nbd serving a fresh qcow2 image of $size, its pid in
# qemu_pid and the export's URI in uri.
start_qemu() {
	local img=$out/disk.qcow2 log=$out/qemu-nbd-$1.log port
	rm -f "$img"
	qemu-img create -q -f qcow2 "$img" "$size"
	for _ in $(seq 20); do
		port=$((20000 + RANDOM % 40000))
		ss -Hltn "sport = :$port" | grep -q . && continue
		# --fork returns once the server listens; the pid file names the daemon.
		if qemu-nbd -t -f qcow2 --cache=writeback -b 127.0.0.1 -p "$port" -x bench \
			--fork --pid-file "$out/qemu-nbd.pid" "$img" 2>"$log"; then
			qemu_pid=$(cat "$out/qemu-nbd.pid")
			uri=nbd://127.0.0.1:$port/bench
			return 0
		fi
	done
	cat "$log" >&2
	echo "qemu-nbd did not start" >&2
	exit 1
}

stop_target() {
	stop_dd
	stop_qemu
	rm -rf "$out/dd-data" "$out/disk.qcow2"
}

# fio_json name args...: runs fio on $uri, keeps its JSON as $out/name.json.
fio_json() {
	local name=$1
	shift
	fio --name="$name" --ioengine=nbd --uri="$uri" --size="$size" --refill_buffers \
		--output-format=json "$@" >"$out/$name.raw"
	# The nbd engine prints a line before the JSON.
	sed '/^fio: connected to NBD server$/d' "$out/$name.raw" >"$out/$name.json"
	rm "$out/$name.raw"
	jq -e '.jobs[0].error == 0' "$out/$name.json" >/dev/null || { echo "fio $name failed: $out/$name.json" >&2; exit 1; }
}

# job_args job: the fio options of a timed run; job_metric job: the jq
# expression of its figure.
job_args() {
	case $1 in
	randwrite-4k) echo --rw=randwrite --bs=4k --iodepth=16 --fsync=32 ;;
	randwrite-64k) echo --rw=randwrite --bs=64k --iodepth=16 --fsync=32 ;;
	seqwrite-1m) echo --rw=write --bs=1m --iodepth=8 --fsync=16 ;;
	randread-4k) echo --rw=randread --bs=4k --iodepth=16 ;;
	seqread-1m) echo --rw=read --bs=1m --iodepth=8 ;;
	*) echo "unknown job $1" >&2; exit 1 ;;
	esac
}
job_metric() {
	case $1 in
	randwrite-*) echo '.jobs[0].write.iops' ;;
	seqwrite-*) echo '.jobs[0].write.bw_bytes / 1048576' ;;
	randread-*) echo '.jobs[0].read.iops' ;;
	seqread-*) echo '.jobs[0].read.bw_bytes / 1048576' ;;
	esac
}
job_unit() { case $1 in *-1m) echo MiB/s ;; *) echo IOPS ;; esac; }

run_one() { # target job run
	local target=$1 job=$2 i=$3
	"start_$target" "$job-$i"
	case $job in
	*read*) fio_json "$job-$target-$i-fill" --rw=write --bs=1m --iodepth=8 --end_fsync=1 ;;
	esac
	# shellcheck disable=SC2046 # job_args is a list of options
	fio_json "$job-$target-$i" $(job_args "$job") --time_based --runtime="$runtime"
	stop_target
	printf '   %-9s run %d: %s %s\n' "$target" "$i" \
		"$(jq "$(job_metric "$job")" "$out/$job-$target-$i.json" | xargs printf '%.1f')" "$(job_unit "$job")" >&2
}

start=$(date +%s)
for job in $jobs; do
	job_args "$job" >/dev/null
	echo "== $job ($(job_args "$job"), ${runtime}s x $runs)" >&2
	for i in $(seq "$runs"); do
		if [ $((i % 2)) = 1 ]; then order="deltadisk qemu"; else order="qemu deltadisk"; fi
		for target in $order; do run_one "$target" "$job" "$i"; done
	done
done
elapsed=$(($(date +%s) - start))

median() { # job target: the median of the runs' figures
	local f
	for f in "$out/$1-$2-"[0-9]*.json; do
		case $f in *-fill.json) continue ;; esac
		jq "$(job_metric "$1")" "$f"
	done | sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
flushes() { # job target: writes per flush over all runs
	cat "$out/$1-$2-"[0-9]*.json | jq -s 'map(select(.jobs[0].jobname | endswith("fill") | not))
		| (map(.jobs[0].write.total_ios) | add) / ([map(.jobs[0].sync.total_ios) | add, 1] | max)'
}

echo
echo "| job | deltadisk | qemu-nbd | deltadisk / qemu-nbd |"
echo "| --- | ---: | ---: | ---: |"
for job in $jobs; do
	d=$(median "$job" deltadisk)
	q=$(median "$job" qemu)
	unit=$(job_unit "$job")
	awk -v j="$job ($(job_args "$job" | sed 's/--rw=//; s/--//g'))" -v d="$d" -v q="$q" -v u="$unit" \
		'BEGIN { printf "| %s | %.0f %s | %.0f %s | %.2f |\n", j, d, u, q, u, (q > 0 ? d / q : 0) }'
done
echo
echo "commit $commit; median of $runs runs of ${runtime}s per job and target, alternated; $size disk; fio $(fio --version | sed 's/^fio-//'), qemu-nbd $(qemu-nbd --version | awk 'NR == 1 { print $2 }'); $(nproc) cores; ${elapsed}s in all"
for job in $jobs; do
	case $job in
	*write*) echo "$job: writes per NBD FLUSH issued by fio: deltadisk $(flushes "$job" deltadisk | xargs printf '%.1f'), qemu-nbd $(flushes "$job" qemu | xargs printf '%.1f')" ;;
	esac
done
echo "raw fio JSON: $out"
