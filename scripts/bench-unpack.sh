#!/usr/bin/env bash
# Unpack benchmark: the same multi-layer gzip image unpacked by podvisor and by `umoci unpack`,
# interleaved, with `gzip -dc` of the layers (decompression alone) as the floor.
#
#   scripts/bench-unpack.sh [ROUNDS]        (default 7; run as root; needs umoci, skopeo, gzip)
#
# Environment: BENCH_DIR (default /tmp/podvisor-bench), PODVISOR (default: a release build of
# this tree). Prints per-tool medians and the ratios podvisor/umoci and podvisor/gzip.
# Goal: podvisor >= 2x faster than umoci and within 1.5x of gzip -dc.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-7}
bench=${BENCH_DIR:-/tmp/podvisor-bench}
for tool in umoci skopeo gzip tar; do
    command -v $tool >/dev/null || { echo "bench-unpack: $tool missing" >&2; exit 1; }
done
if [ -z "${PODVISOR:-}" ]; then
    cargo build --release -q -p podvisor
    PODVISOR=$PWD/target/release/podvisor
fi

# 1. The image: three gzip layers from files already on the machine (python stdlib, perl,
#    some binaries): many small files and some large ones, like real base images.
layout=$bench/layout
if [ ! -f "$layout/index.json" ]; then
    rm -rf "$bench"; mkdir -p "$bench/src" "$layout/blobs/sha256"
    src=$bench/src
    mkdir -p "$src/1/usr/lib" "$src/2/usr/share" "$src/3/usr/bin"
    cp -a /usr/lib/python3.11 "$src/1/usr/lib/"
    cp -a /usr/share/perl "$src/2/usr/share/"
    find /usr/bin -maxdepth 1 -type f -size +100k -size -2M | sort | head -30 | xargs -I{} cp -a {} "$src/3/usr/bin/"
    diffs=(); layers=()
    for n in 1 2 3; do
        tar --sort=name --numeric-owner --format=pax -C "$src/$n" -cf "$bench/layer$n.tar" .
        gzip -6 -n <"$bench/layer$n.tar" >"$bench/layer$n.tar.gz"
        d=$(sha256sum "$bench/layer$n.tar" | cut -d' ' -f1)
        z=$(sha256sum "$bench/layer$n.tar.gz" | cut -d' ' -f1)
        cp "$bench/layer$n.tar.gz" "$layout/blobs/sha256/$z"
        diffs+=("\"sha256:$d\"")
        layers+=("{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar+gzip\",\"digest\":\"sha256:$z\",\"size\":$(stat -c %s "$bench/layer$n.tar.gz")}")
        rm "$bench/layer$n.tar"
    done
    rm -rf "$src"
    (IFS=,; printf '{"architecture":"amd64","os":"linux","config":{"Cmd":["/bin/sh"]},"rootfs":{"type":"layers","diff_ids":[%s]}}' "${diffs[*]}") >"$bench/config.json"
    c=$(sha256sum "$bench/config.json" | cut -d' ' -f1); cp "$bench/config.json" "$layout/blobs/sha256/$c"
    (IFS=,; printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%s},"layers":[%s]}' \
        "$c" "$(stat -c %s "$bench/config.json")" "${layers[*]}") >"$bench/manifest.json"
    m=$(sha256sum "$bench/manifest.json" | cut -d' ' -f1); cp "$bench/manifest.json" "$layout/blobs/sha256/$m"
    printf '{"imageLayoutVersion":"1.0.0"}' >"$layout/oci-layout"
    printf '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%s,"annotations":{"org.opencontainers.image.ref.name":"bench"}}]}' \
        "$m" "$(stat -c %s "$bench/manifest.json")" >"$layout/index.json"
fi
gz_total=$(cat "$bench"/layer*.tar.gz | wc -c)
raw_total=$(for f in "$bench"/layer*.tar.gz; do gzip -dc "$f"; done | wc -c)
echo "image: 3 gzip layers, $((gz_total / 1000000)) MB compressed, $((raw_total / 1000000)) MB uncompressed"

# 2. podvisor's store with the image in it (not timed). Every run unpacks into fresh
#    directories (a store root sharing the same images/ by symlink, a fresh umoci bundle):
#    nothing is deleted between rounds, because ext4 makes inode allocation slow right after
#    mass deletion (recently_deleted) and that would measure the file system, not the unpacker.
store=$bench/store
rm -rf "$store" "$bench/runs"; mkdir -p "$store/images" "$bench/runs"
skopeo --insecure-policy copy -q --preserve-digests "oci:$layout:bench" "oci:$store/images:docker.io/library/bench:latest"
sync; sleep "${SETTLE:-40}"   # let deletions from earlier runs age out of ext4's recently-deleted window

now() { date +%s%N; }
declare -A times
run_podvisor() {
    local r; r=$(mktemp -d "$bench/runs/p.XXXXXX"); ln -s "$store/images" "$r/images"
    local t0; t0=$(now); "$PODVISOR" images --root "$r" unpack bench >/dev/null; echo $(( $(now) - t0 ))
}
run_umoci() {
    local b; b=$(mktemp -u "$bench/runs/u.XXXXXX")
    local t0; t0=$(now); umoci unpack --image "$layout:bench" "$b" >/dev/null 2>&1; echo $(( $(now) - t0 ))
}
run_gzip() { local t0; t0=$(now); for f in "$bench"/layer*.tar.gz; do gzip -dc "$f" >/dev/null; done; echo $(( $(now) - t0 )); }

# 3. Interleaved rounds (one warm-up round discarded).
for tool in podvisor umoci gzip; do "run_$tool" >/dev/null; done
for ((i = 1; i <= rounds; i++)); do
    for tool in podvisor umoci gzip; do
        t=$("run_$tool")
        times[$tool]+="$t "
    done
done
rm -rf "$bench/runs"

median_ms() { tr ' ' '\n' | grep -v '^$' | sort -n | awk '{a[NR]=$1} END {m = (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2; printf "%.1f", m / 1e6}'; }
p=$(echo "${times[podvisor]}" | median_ms)
u=$(echo "${times[umoci]}" | median_ms)
g=$(echo "${times[gzip]}" | median_ms)
echo "rounds: $rounds (interleaved), medians:"
printf '  podvisor unpack   %8.1f ms\n' "$p"
printf '  umoci unpack      %8.1f ms\n' "$u"
printf '  gzip -dc (floor)  %8.1f ms\n' "$g"
awk -v p="$p" -v u="$u" -v g="$g" 'BEGIN {
    printf "umoci / podvisor = %.2fx (goal >= 2)\n", u / p;
    printf "podvisor / gzip -dc = %.2fx (goal <= 1.5)\n", p / g }'
