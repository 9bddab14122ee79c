"""Stereo benchmark: fill quality on Middlebury Cones, 1080p throughput, synthetic stereo clip.

    python benchmarks/stereo.py [--device numpy,cpu|cuda] [--machine NAME] [--frames 6]
                                [--synthetic-frames 12] [--skip-synthetic]
                                [--scene-clip CLIP --scene-reconstruction RECON]

1. Middlebury 2003 Cones (real rectified pair, true disparity): the left image warped with the
   true disparity, compared with the real right image where it is seen (PSNR/SSIM), and in the
   disoccluded region for the naive baseline (warp + cv2.inpaint Telea) and our fills, side by
   side.
2. Throughput at 1920x1080: frames/s of warp + fill on an analytic layered clip, for the
   chosen device, with and without the temporal fill.
3. A synthetic Blender clip rendered as a true stereo pair (backend.synthetic.make_clip with
   ``stereo``): right eyes synthesised from the left frames and their true depth, compared with
   the rendered right eyes (PSNR/SSIM overall and disoccluded, temporal flicker), ours vs naive.
4. With ``--scene-clip``/``--scene-reconstruction`` (a stereo synthetic clip and its
   reconstruction): scene stereo's right eyes from the splats against the true right eyes, and
   the rate of rendering both eyes.

Writes ``benchmarks/results/stereo-<machine>.json`` and ``.md``.
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from backend.evaluation.machine import cpu_model  # noqa: E402

from backend.evaluation.image_metrics import psnr, ssim, temporal_flicker  # noqa: E402
from backend.pipelines.stereo.analytic import Layer, stereo_clip  # noqa: E402
from backend.pipelines.stereo.disparity import complete_disparity, disparity_from_depth  # noqa: E402
from backend.pipelines.stereo.fill import fill_background, inpaint_background, inpaint_cv2  # noqa: E402
from backend.pipelines.stereo.pipeline import WarpSettings, depth_warp_stereo  # noqa: E402
from backend.pipelines.stereo.warp import warp_right  # noqa: E402

DATA = REPO.parent / "shared" / "data"


def border_mask(hole):
    w = hole.shape[1]
    last = np.where(~hole, np.arange(w)[None], -1).max(axis=1)
    return np.arange(w)[None] > last[:, None]


def middlebury() -> dict:
    d = DATA / "middlebury-cones"
    left = cv2.imread(str(d / "left_rgb.tif"), cv2.IMREAD_UNCHANGED).astype(np.float32)
    right = cv2.imread(str(d / "right_rgb.tif"), cv2.IMREAD_UNCHANGED).astype(np.float32)
    disp = cv2.imread(str(d / "Cones_LEFT_GT.tif"), cv2.IMREAD_UNCHANGED).astype(np.float32)
    nonocc = cv2.imread(str(d / "Occlusion_LEFT.png"), cv2.IMREAD_GRAYSCALE) > 0
    seen = warp_right(left, disp, valid=(disp > 0) & nonocc)
    cov = ~seen.hole
    out = {"size": [int(left.shape[1]), int(left.shape[0])],
           "warp_seen_region": {"psnr": psnr(seen.image, right, mask=cov), "ssim": ssim(seen.image, right, mask=cov),
                                "fraction": float(cov.mean())}}
    full = complete_disparity(disp, valid=disp > 0)
    w = warp_right(left, full)
    dis = w.hole & ~border_mask(w.hole)
    fills = {"naive_warp_cv2_inpaint": lambda: inpaint_cv2(w.image, w.hole, radius=3),
             "ours_background_inpaint": lambda: inpaint_background(w.image, w.hole, w.z),
             "ours_background_rows": lambda: fill_background(w.image, w.hole, w.z)}
    res = {}
    for name, fn in fills.items():
        t = time.perf_counter()
        img = fn()
        dt = time.perf_counter() - t
        res[name] = {"disoccluded_psnr": psnr(img, right, mask=dis), "disoccluded_ssim": ssim(img, right, mask=dis),
                     "overall_psnr": psnr(img, right, mask=~border_mask(w.hole)), "fill_ms": 1000 * dt}
    out["disoccluded_pixels"] = int(dis.sum())
    out["fills"] = res
    return out


def throughput(device: str, frames: int) -> dict:
    h, w, f, b = 1080, 1920, 1500.0, 0.065
    layers = [Layer(depth=12.0, seed=1), Layer(depth=3.0, x0=500, y0=200, width=500, height=600, velocity=-6, seed=2),
              Layer(depth=1.8, x0=1200, y0=400, width=300, height=500, velocity=4, seed=3)]
    lefts, _, disps = stereo_clip(layers, h, w, frames, f, b)
    lefts = [np.clip(x, 0, 255).astype(np.uint8) for x in lefts]
    depth = [(f * b / d).astype(np.float32) for d in disps]
    out = {}
    configs = {"warp+rows_fill": dict(fill="rows", temporal_radius=0),
               "warp+background_inpaint": dict(fill="background", temporal_radius=0),
               "warp+temporal(2)+background_inpaint": dict(fill="background", temporal_radius=2)}
    for name, kw in configs.items():
        s = WarpSettings(interaxial=b, convergence=4.0, device=device, chunk=8, **kw)
        gen = depth_warp_stereo(iter(lefts), lambda i, rgb: ("metric", depth[i]), s, focal_px=f)
        first = True
        t0, c0 = time.perf_counter(), time.process_time()
        n, holes = 0, []
        for r in gen:
            holes.append(float(r.hole.mean()))
            if first:  # exclude warm-up (CUDA context, allocator) from the rate
                first = False
                t0, c0 = time.perf_counter(), time.process_time()
                continue
            n += 1
        if device.startswith("cuda"):
            import torch

            torch.cuda.synchronize()
        dt, dc = time.perf_counter() - t0, time.process_time() - c0
        out[name] = {"frames": n, "seconds": dt, "frames_per_second": n / dt if dt > 0 else None,
                     "cpu_seconds_per_frame": dc / max(n, 1), "hole_fraction": float(np.mean(holes))}
    return out


def synthetic(frames: int, interaxial: float) -> dict:
    from backend.synthetic import make_clip

    tmp = Path(tempfile.mkdtemp(prefix="stereo-bench-"))
    t0 = time.perf_counter()
    paths = make_clip(tmp / "clip", path="handheld", width=320, height=180, frames=frames, samples=16,
                      stereo=interaxial, occluder=True, seed=3, video=False)
    render_s = time.perf_counter() - t0
    truth = json.loads(paths["truth"].read_text())
    f = float(truth["frames"][0]["focal_px"])
    read = lambda p: cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB)  # noqa: E731
    lefts = [read(p) for p in sorted(paths["frames"].glob("*.png"))]
    rights = [read(p) for p in sorted(paths["right_frames"].glob("*.png"))]
    depth = [np.load(p) for p in sorted(paths["depth"].glob("*.npy"))]
    out = {"size": [320, 180], "frames": len(lefts), "interaxial_m": interaxial, "focal_px": f,
           "render_seconds": render_s}
    for name, kw in {"naive_warp_cv2_inpaint": dict(fill="cv2", temporal_radius=0),
                     "ours_background": dict(fill="background", temporal_radius=0),
                     "ours_temporal+background": dict(fill="background", temporal_radius=2)}.items():
        s = WarpSettings(interaxial=interaxial, convergence=1e12, **kw)
        res = list(depth_warp_stereo(iter(lefts), lambda i, rgb: ("metric", depth[i]), s, focal_px=f))
        p_all, s_all, p_dis, s_dis, masks = [], [], [], [], []
        for r, gt in zip(res, rights):
            inside = ~border_mask(r.hole)
            dis = r.hole & inside
            masks.append(inside)
            p_all.append(psnr(r.right, gt, mask=inside))
            s_all.append(ssim(r.right, gt, mask=inside))
            if dis.sum() > 20:
                p_dis.append(psnr(r.right, gt, mask=dis))
                s_dis.append(ssim(r.right, gt, mask=dis))
        common = np.logical_and.reduce(masks)
        out[name] = {"psnr": float(np.mean(p_all)), "ssim": float(np.mean(s_all)),
                     "disoccluded_psnr": float(np.mean(p_dis)) if p_dis else None,
                     "disoccluded_ssim": float(np.mean(s_dis)) if s_dis else None,
                     "hole_fraction": float(np.mean([r.hole.mean() for r in res])),
                     "flicker": temporal_flicker([r.right for r in res], rights, mask=common)}
    # the disparity range the depth gives, for context
    d = disparity_from_depth(depth[0], f, interaxial)
    out["disparity_px_range"] = [float(np.nanmin(d)), float(np.nanmax(d))]
    return out


def scene(clip_dir: Path, reconstruction: Path, device: str, batch: int = 8, cpu_frames: int | None = None) -> dict:
    """Scene stereo on a synthetic stereo clip that was reconstructed: right eyes rendered from the
    splats (cameras from ``truth.json``, or the reconstruction's refined cameras) against the
    rendered true right eyes.

    The host path (top-level keys): both eyes rendered to host arrays (``render_views``), the
    right eye composed with numpy on the CPU (``compose_right``; on the first ``cpu_frames``
    frames when given). On a torch device (``device_path``): ``batch`` frames at a time stay on
    the device from render to the uint8 right eye (``render_pair_device``,
    ``compose_right_torch``); timed are rendering both eyes alone, composing alone (per frame),
    and end to end as the stereo job runs it (``DeviceStereo.right_eyes``: footage upload,
    render, compose, uint8 download), each after a warm-up batch. Reading the footage from disk is outside every timing.
    """
    from shared_protocol import camera_file

    from backend.pipelines.splats_io import load_splats
    from backend.pipelines.stereo.scene import _find_splats, compose_right, render_pair

    truth = json.loads((clip_dir / "truth.json").read_text())
    B = float(truth["interaxial_m"])
    cams_path = reconstruction / "cameras_refined.json"
    doc = camera_file.read(cams_path) if cams_path.is_file() else truth
    frames = [f for f in doc["frames"] if f.get("registered", True)]
    w, h = int(doc["width"]), int(doc["height"])
    splats = load_splats(_find_splats(reconstruction))
    read = lambda p: cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB)  # noqa: E731
    mw = [f["matrix_world"] for f in frames]
    fl = [f["focal_px"] for f in frames]
    pp = [f["principal_point_px"] for f in frames]
    footage = [read(clip_dir / "frames" / str(f["source"])) for f in frames]
    gts = [read(clip_dir / "right" / "frames" / str(f["source"])) for f in frames]
    out = {"clip": str(clip_dir), "reconstruction": str(reconstruction), "frames": len(frames), "size": [w, h],
           "splats": int(len(splats.means)), "device": device}
    n_cpu = len(frames) if cpu_frames is None else max(1, min(cpu_frames, len(frames)))
    render_pair(splats, mw[:1], fl[:1], pp[:1], w, h, (w, h), B, None, device)  # warm-up
    _sync(device)
    t0 = time.perf_counter()
    left, right = render_pair(splats, mw, fl, pp, w, h, (w, h), B, None, device)
    render_s = time.perf_counter() - t0
    p_raw, p_eye, s_eye, compose_s = [], [], [], []
    for i, f in enumerate(frames[:n_cpu]):
        gt = gts[i]
        t1 = time.perf_counter()
        eye, _, _ = compose_right(footage[i], left, right, i, float(f["focal_px"]), B, None)
        compose_s.append(time.perf_counter() - t1)
        p_raw.append(psnr(right["rgb"][i] * 255.0, gt))
        p_eye.append(psnr(eye, gt))
        s_eye.append(ssim(eye, gt))
    del left, right
    rate = len(frames) / render_s
    out.update({"cpu_frames": n_cpu, "right_eye_psnr": float(np.mean(p_eye)), "right_eye_ssim": float(np.mean(s_eye)),
                "raw_render_psnr": float(np.mean(p_raw)),
                "render_both_eyes_frames_per_second": rate,
                "compose_right_eye_s_median": float(np.median(compose_s)),
                "end_to_end_frames_per_second": 1.0 / (1.0 / rate + float(np.mean(compose_s)))})
    if device != "numpy":
        out["device_path"] = scene_device(splats, footage, gts, mw, fl, pp, w, h, B, device, batch)
    return out


def _sync(device: str) -> None:
    if str(device).startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def scene_device(splats, footage, gts, mw, fl, pp, w, h, B, device: str, batch: int) -> dict:
    """The device-resident scene-stereo path over every frame, ``batch`` frames at a time."""
    import torch

    from backend.pipelines.render import splats_to_tensors
    from backend.pipelines.stereo.scene import DeviceStereo, compose_right_torch, render_pair_device

    dev = torch.device(device)
    g = splats_to_tensors(splats, dev)
    n = len(footage)
    spans = [(a, min(n, a + batch)) for a in range(0, n, batch)]

    def render(a, b):
        return render_pair_device(splats, mw[a:b], fl[a:b], pp[a:b], w, h, (w, h), B, None, dev, gaussians=g)

    def compose(a, b, left, right, gen):
        foot = torch.from_numpy(np.stack(footage[a:b])).to(dev)
        return compose_right_torch(foot, left, right, fl[a:b], B, None, generator=gen)[0]

    gen = torch.Generator(device=dev).manual_seed(0)
    compose(*spans[0], *render(*spans[0]), gen).cpu()  # warm-up: CUDA context, kernels, allocator
    _sync(device)
    t0 = time.perf_counter()
    for a, b in spans:
        render(a, b)
    _sync(device)
    render_s = time.perf_counter() - t0
    per_frame = []
    for a, b in spans:
        left, right = render(a, b)
        _sync(device)
        t1 = time.perf_counter()
        compose(a, b, left, right, gen)
        _sync(device)
        per_frame += [(time.perf_counter() - t1) / (b - a)] * (b - a)
    del left, right
    stereo = DeviceStereo(splats, w, h, (w, h), B, device)  # what the stereo job runs per batch
    stereo.right_eyes(footage[:batch], mw[:batch], fl[:batch], pp[:batch], None)  # warm-up (pinned buffers)
    eyes = []
    _sync(device)
    t0 = time.perf_counter()
    for a, b in spans:
        eyes.extend(stereo.right_eyes(footage[a:b], mw[a:b], fl[a:b], pp[a:b], None))
    e2e_s = time.perf_counter() - t0
    p_eye = [psnr(e, gt) for e, gt in zip(eyes, gts)]
    s_eye = [ssim(e, gt) for e, gt in zip(eyes, gts)]
    res = {"batch_frames": batch, "right_eye_psnr": float(np.mean(p_eye)), "right_eye_ssim": float(np.mean(s_eye)),
           "render_both_eyes_frames_per_second": n / render_s,
           "compose_right_eye_ms_median": 1000 * float(np.median(per_frame)),
           "end_to_end_frames_per_second": n / e2e_s}
    if dev.type == "cuda":
        res["peak_gpu_memory_gib"] = torch.cuda.max_memory_allocated(dev) / 2 ** 30
    return res


def machine_description(device: str) -> str:
    cpu = cpu_model()
    desc = f"{socket.gethostname()}: {cpu}, {os.cpu_count()} logical CPUs"
    if device.startswith("cuda"):
        import torch

        desc += f", GPU {torch.cuda.get_device_name(0)}"
    return desc


def to_markdown(r: dict) -> str:
    lines = [f"# Stereo benchmark ({r['machine']})", "",
             f"Machine: {r['machine_description']}. Devices: `{r['device']}`. Load average (1/5/15 min) at "
             f"start {', '.join(f'{x:.1f}' for x in r['load_average_at_start'])}, at end "
             f"{', '.join(f'{x:.1f}' for x in r['load_average_at_end'])}: on a shared machine wall-clock rates "
             "understate what an idle one does; CPU seconds per frame are less affected.", ""]
    m = r.get("middlebury")
    lines += [] if not m else ["## Middlebury 2003 Cones (true disparity)", "",
              f"Warp, seen region ({100 * m['warp_seen_region']['fraction']:.1f}% of pixels): "
              f"PSNR {m['warp_seen_region']['psnr']:.2f} dB, SSIM {m['warp_seen_region']['ssim']:.3f}.", "",
              f"Disoccluded region ({m['disoccluded_pixels']} px):", "",
              "| fill | PSNR (dB) | SSIM | overall PSNR (dB) | fill ms |", "|---|---|---|---|---|"]
    for k, v in (m["fills"].items() if m else ()):
        lines.append(f"| {k} | {v['disoccluded_psnr']:.2f} | {v['disoccluded_ssim']:.3f} | "
                     f"{v['overall_psnr']:.2f} | {v['fill_ms']:.1f} |")
    lines += [] if not r["throughput_1080p"] else ["", "## Throughput, 1920x1080 (analytic layered clip, warm-up frame excluded)", "",
              "| device | configuration | frames/s | CPU s/frame | hole fraction |", "|---|---|---|---|---|"]
    for dev, confs in r["throughput_1080p"].items():
        for k, v in confs.items():
            lines.append(f"| {dev} | {k} | {v['frames_per_second']:.2f} | {v['cpu_seconds_per_frame']:.2f} | "
                         f"{v['hole_fraction']:.4f} |")
    s = r.get("synthetic")
    if s:
        lines += ["", f"## Synthetic Blender stereo clip ({s['size'][0]}x{s['size'][1]}, {s['frames']} frames, "
                  f"interaxial {s['interaxial_m']} m, disparity {s['disparity_px_range'][0]:.1f}.."
                  f"{s['disparity_px_range'][1]:.1f} px), true depth", "",
                  "| method | PSNR | SSIM | disoccluded PSNR | disoccluded SSIM | flicker |", "|---|---|---|---|---|---|"]
        for k in ("naive_warp_cv2_inpaint", "ours_background", "ours_temporal+background"):
            v = s[k]
            dp = "n/a" if v["disoccluded_psnr"] is None else f"{v['disoccluded_psnr']:.2f}"
            ds = "n/a" if v["disoccluded_ssim"] is None else f"{v['disoccluded_ssim']:.3f}"
            lines.append(f"| {k} | {v['psnr']:.2f} | {v['ssim']:.3f} | {dp} | {ds} | {v['flicker']:.3f} |")
    sc = r.get("scene")
    if sc:
        lines += ["", f"## Scene stereo ({sc['size'][0]}x{sc['size'][1]}, {sc['frames']} frames)", "",
                  f"Right eye from the splats vs the true right eye: PSNR {sc['right_eye_psnr']:.2f} dB "
                  f"(raw render {sc['raw_render_psnr']:.2f} dB), SSIM {sc['right_eye_ssim']:.3f}; "
                  f"both eyes rendered at {sc['render_both_eyes_frames_per_second']:.1f} frames/s; "
                  f"composing the right eye (colour match, warp and fill where the splats are not opaque) "
                  f"takes a median {1000 * sc['compose_right_eye_s_median']:.0f} ms on the CPU; end to end "
                  f"{sc['end_to_end_frames_per_second']:.1f} frames/s"
                  + (f" (compose measured on the first {sc['cpu_frames']} frames)."
                     if sc.get("cpu_frames", sc["frames"]) < sc["frames"] else ".")]
        dp = sc.get("device_path")
        if dp:
            lines += ["", f"Device-resident path on `{sc['device']}` ({dp['batch_frames']} frames per batch, "
                      f"render to uint8 right eye on the device): right-eye PSNR {dp['right_eye_psnr']:.2f} dB, SSIM "
                      f"{dp['right_eye_ssim']:.3f}; both eyes rendered at "
                      f"{dp['render_both_eyes_frames_per_second']:.1f} frames/s; composing takes a median "
                      f"{dp['compose_right_eye_ms_median']:.1f} ms per frame; end to end (footage upload, render, "
                      f"compose, uint8 download) {dp['end_to_end_frames_per_second']:.1f} frames/s."]
    lines.append("")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="numpy,cpu",
                    help="comma-separated: numpy (CPU numpy path), cpu or cuda (torch path); default numpy,cpu")
    ap.add_argument("--machine", default=None, help="name for the results file (default: cpu-<nproc>core, or gpu)")
    ap.add_argument("--frames", type=int, default=6, help="1080p frames timed per configuration")
    ap.add_argument("--synthetic-frames", type=int, default=12)
    ap.add_argument("--interaxial", type=float, default=0.2, help="synthetic clip interaxial (m)")
    ap.add_argument("--skip-synthetic", action="store_true")
    ap.add_argument("--scene-clip", type=Path, help="a synthetic stereo clip folder (make_clip with stereo)")
    ap.add_argument("--scene-reconstruction", type=Path, help="its reconstruction folder (splats.ply)")
    ap.add_argument("--scene-only", action="store_true", help="only the scene-stereo measurement")
    ap.add_argument("--scene-batch", type=int, default=8, help="frames per batch of the device-resident scene path")
    ap.add_argument("--scene-cpu-frames", type=int, default=None,
                    help="compose the host path's right eye with numpy on only the first N frames (default all)")
    ap.add_argument("--out-dir", type=Path, default=REPO / "benchmarks" / "results")
    args = ap.parse_args(argv)
    devices = [d.strip() for d in args.device.split(",") if d.strip()]
    gpu = any(d.startswith("cuda") for d in devices)
    machine = args.machine or ("gpu" if gpu else f"cpu-{os.cpu_count()}core")
    r = {"machine": machine, "machine_description": machine_description("cuda" if gpu else "numpy"),
         "device": args.device, "load_average_at_start": list(os.getloadavg())}
    t = time.perf_counter()
    if not args.scene_only:
        r["middlebury"] = middlebury()
        print("middlebury done", json.dumps(r["middlebury"]["fills"], indent=1), flush=True)
    r["throughput_1080p"] = {}
    for dev in ([] if args.scene_only else devices):
        r["throughput_1080p"][dev] = throughput(dev, args.frames + 1)
        print("throughput done", dev, json.dumps(r["throughput_1080p"][dev], indent=1), flush=True)
    if not (args.skip_synthetic or args.scene_only):
        r["synthetic"] = synthetic(args.synthetic_frames, args.interaxial)
        print("synthetic done", flush=True)
    if args.scene_clip and args.scene_reconstruction:
        dev = next((d for d in devices if d != "numpy"), "cpu")
        r["scene"] = scene(args.scene_clip, args.scene_reconstruction, dev, args.scene_batch, args.scene_cpu_frames)
        print("scene done", json.dumps(r["scene"], indent=1), flush=True)
    r["total_seconds"] = time.perf_counter() - t
    r["load_average_at_end"] = list(os.getloadavg())
    out = args.out_dir
    out.mkdir(parents=True, exist_ok=True)
    (out / f"stereo-{machine}.json").write_text(json.dumps(r, indent=1) + "\n")
    (out / f"stereo-{machine}.md").write_text(to_markdown(r))
    print(to_markdown(r))
    return 0


if __name__ == "__main__":
    sys.exit(main())
