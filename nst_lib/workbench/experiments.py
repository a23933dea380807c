"""The papers' experiments and the numbers the notebooks report, as functions, so the notebooks only call and plot.

- Content and style reconstructions (Gatys et al. 2016 Fig. 1; seed 000 Figs 9-11).
- The identity test f(C, C) ≈ C and the grayscale test f(C, g(C)) ≈ g(C) (seed 003 §4).
- Interpolation in a style VAE's style space, deterministic against variational encoder (seed 002; notebook 06).
- CycleGAN against Gatys on the same photos: SSIM to the photo, Gram distance to the paintings, time (notebook 07).
- Gatys against VQGAN guidance: SSIM to the content, style loss to the painting (seed 000; notebook 08).
- StyleGAN style mixing: how far coarse or fine styles move an image's layout (Karras et al. Fig. 3; notebook 09).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence

import numpy as np

from ..config import StyleConfig
from ..images import ImageLike, grayscale, load_image, resize, tile
from ..metrics import gram_distance, lowpass_distance, mean_saturation, ssim
from ..models.style_vae import interpolation_evenness
from ..transfer import stylize
from .viz import figure


def content_reconstruction(content: ImageLike, layer: str, config: StyleConfig, **kw) -> np.ndarray:
    """Reconstruct ``content`` from white noise using only one layer's content loss."""
    cfg = config.replace(content_layers=(layer,), style_weight=0.0, tv_weight=0.0, init="noise")
    return stylize(content, content, cfg, **{"out": None, **kw}).image


def style_reconstruction(style: ImageLike, layers: Sequence[str], config: StyleConfig, **kw) -> np.ndarray:
    """Synthesise the texture of ``style`` from white noise using only the Gram losses of ``layers``."""
    cfg = config.replace(
        style_layers=tuple(layers), style_layer_weights=None, content_weight=0.0, tv_weight=0.0, init="noise"
    )
    return stylize(style, style, cfg, **{"out": None, **kw}).image


class _SSIMTrack:
    """A stylize callback: SSIM (luminance) of the image to ``reference`` after the given numbers of steps,
    counted over all scales (a scale's own step numbers start again at 1)."""

    def __init__(self, reference: np.ndarray, at: Sequence[int]):
        self.reference, self.at, self.values, self.steps = reference, set(at), {}, 0

    def __call__(self, info) -> bool:
        self.steps += 1
        if self.steps in self.at:
            image = info.image()  # a coarse scale's image is smaller: compared with the reference at its size
            reference = (
                self.reference if image.shape == self.reference.shape else resize(self.reference, image.shape[:2])
            )
            self.values[self.steps] = ssim(image, reference)
        return False


def _with_overrides(config: StyleConfig, kw: dict) -> tuple[StyleConfig, dict]:
    """``config`` with the StyleConfig fields among ``kw`` (which stylize would apply), and the rest of ``kw``: the
    test's reference image and its record must be the run's size and init."""
    fields = set(StyleConfig.__dataclass_fields__)
    return config.replace(**{k: v for k, v in kw.items() if k in fields}), {
        k: v for k, v in kw.items() if k not in fields
    }


def identity_test(content: ImageLike, config: StyleConfig, checkpoints: Sequence[int] = (), **kw) -> dict:
    """f(C, C) = C? Stylise C with itself as the style from ``config.init`` and return the output, its SSIM
    (luminance) to C, the steps taken and the SSIM at each step in ``checkpoints``.

    Only a start from white noise (``init="noise"``, seed 003) tests the claim: from the content image the
    content and style losses are 0 at the first step, so only the TV term moves the image (a TV-blur test)."""
    config, kw = _with_overrides(config, kw)
    c = load_image(content, config.size, config.max_pixels)
    track = _SSIMTrack(c, checkpoints)
    result = stylize(c, c, config, **{"out": None, **kw, "callbacks": [track, *kw.get("callbacks", ())]})
    return {
        "image": result.image,
        "ssim": ssim(result.image, c),
        "steps": len(result.history),
        "init": config.init,
        "ssim_at": track.values,
    }


def grayscale_test(content: ImageLike, config: StyleConfig, checkpoints: Sequence[int] = (), **kw) -> dict:
    """f(C, g(C)) = g(C)? Returns the output, its mean saturation next to C's, its SSIM to g(C), the steps taken
    and the SSIM to g(C) at each step in ``checkpoints`` (from ``config.init``: use "noise", as for the
    identity test)."""
    config, kw = _with_overrides(config, kw)
    c = load_image(content, config.size, config.max_pixels)
    g = grayscale(c)
    track = _SSIMTrack(g, checkpoints)
    result = stylize(c, g, config, **{"out": None, **kw, "callbacks": [track, *kw.get("callbacks", ())]})
    out = result.image
    return {
        "image": out,
        "gray": g,
        "saturation": mean_saturation(out),
        "content_saturation": mean_saturation(c),
        "ssim_to_gray": ssim(out, g),
        "steps": len(result.history),
        "init": config.init,
        "ssim_at": track.values,
    }


# --- notebook 06: interpolation in style space ------------------------------------------------------------
def interpolation_study(
    models: Mapping[str, object],
    contents: np.ndarray,
    styles: np.ndarray,
    pairs: Sequence[tuple[int, int]],
    steps: int = 8,
) -> dict:
    """For each style VAE in ``models``: the path of ``contents[0]`` stylised along the straight line between the
    codes of the first pair of ``styles`` (to show), and ``interpolation_evenness`` over every content × pair.
    Returns {label: {"t", "path" (uint8 images), "evenness" (cv, max_share, straightness, from_start, paths)}}."""
    study = {}
    for label, model in models.items():
        z = model.style_codes(styles)[0]
        a, b = pairs[0]
        t, path = model.interpolate(contents[0], z[a], z[b], steps=steps)
        evenness = interpolation_evenness(model, contents, [(z[i], z[j]) for i, j in pairs], steps=steps)
        study[label] = {"t": t, "path": path, "evenness": evenness}
    return study


def interpolation_figure(study: dict, title: str = "Interpolation in style space"):
    """Each model's example path (left) and the mean normalised Gram distance from the start along the paths
    (right; the dashed diagonal is a perfectly even path)."""
    fig = figure(13, 4.6)
    left, right = fig.subfigures(1, 2, width_ratios=[2.2, 1])
    rows = left.subplots(len(study), 1, squeeze=False)[:, 0]
    curve = right.subplots()
    for ax, (label, item) in zip(rows, study.items()):
        ax.imshow(tile(item["path"], cols=len(item["path"])))
        ax.set_axis_off()
        ax.set_title(label, fontsize=9)
        e = item["evenness"]
        curve.plot(
            item["t"],
            e["from_start"].mean(0),
            marker="o",
            label=f"{label}: cv {e['cv']:.2f}, max share {e['max_share']:.2f}",
        )
    curve.plot([0, 1], [0, 1], color="0.7", linestyle="--", label="perfectly even")
    curve.set_xlabel("t along the path")
    curve.set_ylabel("Gram distance from start (normalised)")
    curve.legend(fontsize=7)
    paths = next(iter(study.values()))["evenness"]["paths"]
    curve.set_title(f"mean of {paths} paths", fontsize=9)
    fig.suptitle(title)
    return fig


# --- notebook 07: CycleGAN against Gatys ---------------------------------------------------------------------
def cyclegan_vs_gatys(
    model,
    photos: np.ndarray,
    paintings: np.ndarray,
    config: StyleConfig,
    extractor,
    layers: Sequence[str],
    first_name: str = "first painting",
) -> dict:
    """G(x) of a trained CycleGAN against Gatys' optimisation (``config``) with the paintings' averaged Grams and
    with the first painting alone, on the same uint8 ``photos``. Returns {"outputs": {method: images},
    "rows": [{"method", "ssim_to_photo", "gram_distance", "seconds_per_image"}]}: SSIM of each output to its
    photo, ``metrics.gram_distance`` to the paintings on ``layers`` of ``extractor``, and the time per image.
    The first row is the photos themselves."""
    outputs, seconds = {}, {}
    t0 = time.perf_counter()
    outputs["CycleGAN G(x)"] = model.to_painting(photos)
    seconds["CycleGAN G(x)"] = (time.perf_counter() - t0) / len(photos)
    for label, style in (
        (f"Gatys, {len(paintings)} paintings", list(paintings)),
        (f"Gatys, {first_name}", paintings[0]),
    ):
        t0 = time.perf_counter()
        outputs[label] = np.stack([stylize(x, style, config, out=None, progress=False).image for x in photos])
        seconds[label] = (time.perf_counter() - t0) / len(photos)
    rows = []
    for label, images in [("photo (input)", photos), *outputs.items()]:
        rows.append(
            {
                "method": label,
                "ssim_to_photo": float(np.mean([ssim(a, b) for a, b in zip(images, photos)])),
                "gram_distance": gram_distance(images, paintings, extractor, layers),
                "seconds_per_image": seconds.get(label, 0.0),
            }
        )
    return {"outputs": outputs, "rows": rows}


# --- notebook 08: Gatys against VQGAN guidance -----------------------------------------------------------------
def guidance_comparison(
    content: np.ndarray, gatys: Mapping[str, np.ndarray], guided: Mapping[str, object], judge
) -> list[dict]:
    """SSIM to the content photo and style loss (``judge.distance``, e.g. a ``GramPrompt`` of the painting) for
    each Gatys output (``{label: uint8 image}``) and each snapshot of each guidance run (``{label:
    GuidanceResult}``): [{"image", "ssim_to_content", "style_loss"}]."""
    rows = [
        {"image": label, "ssim_to_content": ssim(image, content), "style_loss": judge.distance(image)}
        for label, image in gatys.items()
    ]
    for label, result in guided.items():
        for it, image in sorted(result.snapshots.items()):
            rows.append(
                {
                    "image": f"{label}, {it} it.",
                    "ssim_to_content": ssim(image, content),
                    "style_loss": judge.distance(image),
                }
            )
    return rows


# --- notebook 09: StyleGAN style mixing -----------------------------------------------------------------------
def style_mixing_distances(model, z_sources: np.ndarray, z_destinations: np.ndarray, grid: int = 8) -> dict:
    """How far mixing moves the layout: for the coarse and the fine style-mixing grids (``model.style_mix``), the
    ``metrics.lowpass_distance`` of each mixed image to its *source* image, averaged. Karras et al.'s Fig. 3 has
    coarse styles carry the layout (a small distance) and fine ones not (a large one)."""
    sources = model.render(z_sources)
    out = {}
    for label, coarse in (("coarse", True), ("fine", False)):
        grid_images = model.style_mix(z_sources, z_destinations, coarse=coarse)
        out[label] = float(np.mean([lowpass_distance(row, sources, grid) for row in grid_images]))
    return out
