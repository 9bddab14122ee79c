#!/usr/bin/env bash
# Run the Blender add-on tests against bpy 4.2.x and 4.5.x (Blender 4.2 and 4.5 LTS).
#
#   tests/run_blender_lts.sh [4.2] [4.5]        (default: both)
#
# Each version gets its own virtual environment (Python 3.11, which both LTS releases embed)
# under $SPLATSTAGE_LTS_VENVS (default .cache/bpy-lts), created on first use with
# `pip install bpy==<version>.*`. pytest itself runs in the current Python (which needs
# pytest, numpy, pyzmq and the backend's dependencies); only the Blender subprocesses of the
# tests use the LTS interpreter, through $SPLATSTAGE_BPY_PYTHON.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON311="${PYTHON311:-python3.11}"
PYTEST_PYTHON="${PYTEST_PYTHON:-python}"
VENVS="${SPLATSTAGE_LTS_VENVS:-$REPO/.cache/bpy-lts}"
VERSIONS=("$@")
[ ${#VERSIONS[@]} -eq 0 ] && VERSIONS=(4.2 4.5)

status=0
for ver in "${VERSIONS[@]}"; do
    case "$ver" in
        4.2|4.5) ;;
        *) echo "run_blender_lts: unsupported version '$ver' (use 4.2 or 4.5)" >&2; exit 2 ;;
    esac
    venv="$VENVS/bpy-$ver"
    if ! "$venv/bin/python" -c "import bpy, numpy, zmq" >/dev/null 2>&1; then
        echo "== creating $venv (bpy==$ver.*)"
        "$PYTHON311" -m venv "$venv"
        "$venv/bin/python" -m pip install -q --upgrade pip
        "$venv/bin/python" -m pip install -q "bpy==$ver.*" numpy pyzmq
    fi
    actual="$("$venv/bin/python" -c "import bpy; print(bpy.app.version_string)" 2>/dev/null | tail -1)"
    echo "== add-on tests on Blender $actual"
    if ! (cd "$REPO" && SPLATSTAGE_BPY_PYTHON="$venv/bin/python" PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}" \
            "$PYTEST_PYTHON" -m pytest -q tests/test_addon_cameras.py tests/test_addon_product.py \
            tests/test_addon_install.py tests/test_addon_link.py tests/test_addon_batch.py tests/test_addon_batch_local.py tests/test_addon_core.py tests/test_addon_render.py \
            tests/test_composite_occlusion.py tests/test_composite_envmap.py tests/test_composite_stereo.py); then
        status=1
        echo "== FAILED on Blender $actual"
    fi
done
exit $status
