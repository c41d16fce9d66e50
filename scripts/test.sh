#!/usr/bin/env bash
# Runs deltadisk's whole test suite on a Debian machine with Go, installing
# first what the tests need: qemu-utils for the VHD cross-checks, and
# azure-cli, jq and curl for the scripted az session (TestAzSession).
# In CI mode (DELTADISK_CI=1, set here) a test that skips is a failure.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v qemu-img >/dev/null || need+=(qemu-utils)
command -v az >/dev/null || need+=(azure-cli)
command -v jq >/dev/null || need+=(jq)
command -v curl >/dev/null || need+=(curl)
command -v nbdinfo >/dev/null || need+=(libnbd-bin)
if ((${#need[@]})); then
	sudo=""
	[ "$(id -u)" = 0 ] || sudo=sudo
	$sudo apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}"
fi
export DELTADISK_CI=1

echo "== gofmt, go vet, staticcheck"
unformatted=$(gofmt -l .)
if [ -n "$unformatted" ]; then
	echo "not gofmt-ed: $unformatted" >&2
	exit 1
fi
go vet ./...
go run honnef.co/go/tools/cmd/staticcheck@v0.8.2 ./...

echo "== go test -race (fuzz targets on their seed corpus)"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
go test -race -count=1 -timeout=30m -v ./... >"$log" 2>&1 || status=$?
grep -E '^(ok|FAIL|---|panic)|^\s+--- (FAIL|SKIP)' "$log" | grep -v -- '--- PASS' || true
if grep -qE -- '--- SKIP' "$log"; then
	echo "skipped tests count as failures:" >&2
	grep -E -B1 -A3 -- '--- SKIP' "$log" >&2
	status=1
fi
if [ "$status" != 0 ]; then
	grep -E -A20 -- '--- FAIL' "$log" >&2 || tail -50 "$log" >&2
	exit "$status"
fi

# The seam lets Update run its closure more than once (PostgreSQL retries
# serialization conflicts); bbolt never does. Run the suites above the seam
# again over stores that always do, so a closure with effects outside its
# transaction fails here rather than under load in production. -short
# keeps the property tests' histories fewer: the full run above has them.
for wrap in replaying conflicting; do
	echo "== engine and service tests over the $wrap store"
	DELTADISK_META_WRAP=$wrap go test -race -short -count=1 -timeout=30m ./internal/engine/ ./internal/service/
done

echo "== benchmarks, once each"
go test -run='^$' -bench=. -benchtime=1x ./...
echo "== all tests passed"
