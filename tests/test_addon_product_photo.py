"""The add-on's Product from Photo button: its job parameters (bpy-free) and, in Blender, the
operator on a bad path and the delivery of a product folder (bpy in a subprocess)."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from blender_addon.core.job_params import ParamError
from blender_addon.core.product_job import product_params

sys.path.insert(0, str(Path(__file__).resolve().parent / "blender_scripts"))
from bpy_subprocess import run_script  # noqa: E402


def test_product_params(tmp_path):
    photo = tmp_path / "bottle.png"
    photo.write_bytes(b"x")
    assert product_params(str(photo), 0.25, 10.0) == {"photo": str(photo), "height": 0.25, "elevation": 10.0}
    assert product_params(str(photo), box=" 1,2,30,40 ")["box"] == "1,2,30,40"
    assert product_params(str(photo), preview=True)["steps"] == 150
    for args, word in (((str(tmp_path / "none.png"),), "not found"), (("",), "choose"),
                       ((str(photo), -1.0), "height"), ((str(photo), 0.3, 95.0), "elevation")):
        with pytest.raises(ParamError, match=word):
            product_params(*args)
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(ParamError, match="not a photo"):
        product_params(str(tmp_path / "notes.txt"))


def test_button_delivers_a_product_folder(tmp_path):
    import trimesh

    from backend.pipelines.product.mesh import to_gltf_axes

    folder = tmp_path / "product"
    folder.mkdir()
    box = trimesh.creation.box(extents=(0.1, 0.08, 0.25))
    box.apply_translation((0, 0, 0.125))  # base at z = 0, 0.25 m tall (Blender axes)
    to_gltf_axes(box).export(folder / "product.glb", file_type="glb")
    (folder / "product.json").write_text(json.dumps({"height_m": 0.25, "size_m": [0.1, 0.08, 0.25],
                                                     "num_gaussians": 10}))
    run_script("product_from_photo.py", tmp_path / "r.json", folder, user_dir=tmp_path / "user")
    r = json.loads((tmp_path / "r.json").read_text())
    assert r["operator"] and r["in_product_panel"] and r["bad_path"] == ["CANCELLED"]
    assert r["product_path"] == str(folder / "product.glb") and r["product_size"] == pytest.approx(0.25)
    assert r["insert"] == ["FINISHED"]
    lo, hi = r["z"]
    assert hi - lo == pytest.approx(0.25, rel=1e-4)
