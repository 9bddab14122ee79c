"""A product from one photo: the oracle multi-view model (renders of a real GLB at the model's
fixed poses), the fused product against held-out renders of the same GLB, and bad input."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from backend.evaluation import product_oracle as oracle
from backend.models.multiview import parse_views
from backend.progress import JobError, Progress
from tests.conftest import shared_path

SIZE = 96  # px of the views (the CPU path: small images)
HEIGHT = 0.3  # m
VIEWS = oracle.VIEWS


def write_photo(path, rgba):
    cv2.imwrite(str(path), cv2.cvtColor(rgba, cv2.COLOR_RGBA2BGRA if rgba.shape[2] == 4 else cv2.COLOR_RGB2BGR))
    return path


@pytest.fixture(scope="session")
def oracle_run(tmp_path_factory):
    """Avocado.glb rendered with bpy at the fixed and held-out poses (once per session), the
    product job run on those renders as the generated views, and the measures of its result."""
    glb = shared_path("glb", "products", "Avocado.glb")
    truth = oracle.render_truth(glb, SIZE)
    tmp = tmp_path_factory.mktemp("product")
    photo = write_photo(tmp / "photo.png", truth["rgba"][0])  # a packshot: the front view with its alpha
    summary, _ = oracle.run_oracle(truth, photo, tmp / "out", HEIGHT, steps=300, max_points=8000, turntable_frames=8,
                                  turntable_size=96, mesh_res=96)
    return {"out": tmp / "out", "summary": summary, "m": oracle.measure(truth, tmp / "out", HEIGHT)}


#: benchmarks/results/product-cpu-2core.md: the worst held-out view (21.11 dB, IoU 0.94) and the
#: mesh box (5.36 %) miss the bounds; strict, so the suite fails once they are met. The run takes
#: minutes on a 2-core CPU: marked slow (`pytest -m slow`).
SHORT_OF_BOUNDS = pytest.mark.xfail(strict=True, reason="worst held-out view and mesh box short of the "
                                    "bounds (benchmarks/results/product-cpu-2core.md)")


@pytest.mark.slow
@SHORT_OF_BOUNDS
def test_oracle_product_renders_held_out_views_of_the_glb(oracle_run):
    m = oracle_run["m"]
    for i, (psnr, iou) in enumerate(zip(m["psnr_db"], m["iou"])):
        assert iou >= 0.95, f"held-out view {i}: silhouette IoU {iou:.3f}"
        assert psnr >= 26.0, f"held-out view {i}: {psnr:.2f} dB inside the silhouette"


@pytest.mark.slow
@SHORT_OF_BOUNDS
def test_oracle_product_size_and_mesh(oracle_run):
    import trimesh

    m = oracle_run["m"]
    assert abs(m["splat_height_m"] / HEIGHT - 1) <= 0.01, f"splat height {m['splat_height_m']:.4f} m for {HEIGHT} m"
    assert max(m["mesh_size_error"]) <= 0.03, f"mesh box {m['mesh_size_m']} vs the GLB's {m['glb_size_m']}"
    mesh = trimesh.load(oracle_run["out"] / "product.glb", force="mesh")
    assert mesh.visual.vertex_colors.shape == (len(mesh.vertices), 4)
    assert m["summary"]["height_m"] == HEIGHT
    summary = oracle_run["summary"]
    assert summary["cutout"] == "alpha" and summary["depth_source"] == "depth model"
    assert summary["refine"]["rounds"][0]["agreeing"] > 0.8  # true depth agrees with the fused splats
    for name in ("turntable.mp4", "turntable_strip.png", "views.png"):
        assert (oracle_run["out"] / name).stat().st_size > 0


# ---------------------------------------------------------------------------- bad input ----
def _photo_job(tmp_path, image, **params):
    from backend.jobs.product import run

    photo = write_photo(tmp_path / "photo.png", image)
    models = {"multiview": None, "depth": None, "enhance": None, "cutout": None}
    with pytest.raises(JobError) as err:
        run({"photo": str(photo), "device": "cpu", **params}, tmp_path / "out", Progress(), models=models)
    assert "\n" not in str(err.value)
    assert not (tmp_path / "out").exists()
    return err.value


def test_transparent_png_with_empty_alpha(tmp_path):
    err = _photo_job(tmp_path, np.zeros((128, 128, 4), np.uint8))
    assert err.code == "bad_input" and "alpha" in str(err)


def test_photo_without_a_separable_object(tmp_path):
    flat = np.full((128, 128, 3), 140, np.uint8)
    err = _photo_job(tmp_path, flat)
    assert err.code == "bad_input" and "GrabCut" in str(err)


def test_tiny_photo(tmp_path):
    err = _photo_job(tmp_path, np.full((40, 30, 3), 90, np.uint8))
    assert err.code == "bad_input" and "40" in str(err) or "30x40" in str(err)


@pytest.mark.parametrize("params,word", [({"height": -1.0}, "height"), ({"height": "tall"}, "height"),
                                         ({"box": "1,2,3"}, "box"), ({"box": "0,0,900,900"}, "box"),
                                         ({"elevation": 95.0}, "elevation")])
def test_bad_parameters(tmp_path, params, word):
    img = np.zeros((128, 128, 3), np.uint8)
    img[30:100, 40:90] = (200, 40, 40)
    err = _photo_job(tmp_path, img, **params)
    assert err.code == "bad_params" and word in str(err)


def test_grabcut_separates_an_object_on_a_plain_background():
    from backend.pipelines.product.cutout import cut_out

    rng = np.random.default_rng(0)
    img = np.full((160, 160, 3), 235, np.uint8) + rng.integers(0, 8, (160, 160, 3)).astype(np.uint8)
    cv2.circle(img, (80, 85), 40, (180, 30, 30), -1)
    alpha, method = cut_out(img)
    truth = np.zeros((160, 160), np.uint8)
    cv2.circle(truth, (80, 85), 40, 1, -1)
    iou = ((alpha > 0.5) & (truth > 0)).sum() / ((alpha > 0.5) | (truth > 0)).sum()
    assert method == "grabcut" and iou > 0.95


def test_missing_multiview_weights_name_the_file(tmp_path):
    from backend.jobs.product import run

    img = np.zeros((128, 128, 4), np.uint8)
    img[30:100, 40:90] = (200, 40, 40, 255)
    photo = write_photo(tmp_path / "photo.png", img)
    with pytest.raises(JobError) as err:
        run({"photo": str(photo), "weights": str(tmp_path / "w"), "device": "cpu"}, tmp_path / "out", Progress())
    assert err.value.code == "missing_weights" and "multiview" in str(err.value) and "model_index.json" in str(err.value)


@pytest.mark.parametrize("doc,word", [({"views": [{"azimuth_deg": 0, "elevation_deg": 0}]}, "at least 2"),
                                      ({**VIEWS, "radius": -1}, "radius"),
                                      ({**VIEWS, "grid": [5, 5]}, "grid"),
                                      ({"views": [{"azimuth_deg": 0}, {"azimuth_deg": 90}], "fov_deg": 30,
                                        "radius": 2}, "elevation_deg")])
def test_bad_views_file(doc, word):
    with pytest.raises(JobError) as err:
        parse_views(doc)
    assert err.value.code == "bad_weights" and word in str(err.value)
