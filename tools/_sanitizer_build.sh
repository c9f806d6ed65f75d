# Sourced by tools/sanitize.sh and tools/tsan.sh (not run on its own).
#   sanitizer_build NAME [cmake args...]
# configures and builds the native modules in build/NAME with the given cmake
# arguments, then copies the Python package with those modules (and no other
# _*.so) to build/NAME-pkg, which the caller puts first on PYTHONPATH.
sanitizer_build() {
    local build="build/$1" pkg="build/$1-pkg"
    shift
    cmake -S . -B "$build" "$@" \
          -Dpybind11_DIR="$(python -m pybind11 --cmakedir)" \
          -DCMAKE_PREFIX_PATH="$(python -m cmeel cmake 2>/dev/null)"
    cmake --build "$build" -j 2
    rm -rf "$pkg" && mkdir -p "$pkg"
    cp -r python/fastrnn "$pkg/" && rm -f "$pkg"/fastrnn/_*.so && cp "$build"/_*.so "$pkg/fastrnn/"
}
