"""An ipywidgets panel for interactive style transfer (plain ipywidgets 7.7 or 8, so it works in Colab and
JupyterLab without custom widget managers). Defaults and choices come from ``StyleConfig``.

    from nst_lib.workbench.widgets import StylePanel
    panel = StylePanel(); panel            # in a notebook cell

Live mode (on by default): releasing the α, β or TV slider re-optimises at a preview size (256 px), warm-started
from the image on show, in a background thread; the preview updates after the first step and then every few
steps, and a slider moved again cancels the preview under way. Where a preview takes longer than
``preview_seconds`` (10 s) to settle, the next ones run smaller (down to 128 px) so that they settle in time. The
preview computes at ``preview_precision`` (``"auto"``: bfloat16 on a CPU with bfloat16 units, float16 on a GPU; see
``StyleConfig.precision``).
**Render** runs the full-size stylisation with the current settings, at the config's precision, as a recorded run
(a run folder under ``out``); **Stop** ends whatever runs; **Export** writes the image on show, its config and its
loss curve to a new folder.
"""

from __future__ import annotations

import io
import math
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from ..config import RUNS_DIR, StyleConfig
from ..errors import ConfigError, ImageError, NSTError
from ..features import LAYER_PRESETS, layer_alias
from ..images import DecodedImage, png_bytes
from ..optim import Callback, StepInfo
from ..transfer import save_result, schedule, stylize
from .viz import loss_curves, save_figure

DATA = Path(__file__).resolve().parents[2] / "data"
# convolutions per block: VGG16 has three in blocks 3-5, VGG19 four (Simonyan & Zisserman 2015, Table 1, D and E)
VGG_BLOCKS = {"vgg16": (2, 2, 3, 3, 3), "vgg19": (2, 2, 4, 4, 4)}
RESNET_LAYERS = ["conv1_relu", "conv2_block3_out", "conv3_block4_out", "conv4_block6_out", "conv5_block3_out"]


def candidate_layers(arch: str) -> list[str]:
    """Layers offered as checkboxes: every conv layer of a VGG; the stage outputs of ResNet50."""
    if arch == "resnet50":
        return list(RESNET_LAYERS)
    return [f"block{b}_conv{i}" for b, n in enumerate(VGG_BLOCKS[arch], 1) for i in range(1, n + 1)]


def panel_layer(name: str, arch: str) -> str:
    """The panel's name (a checkbox's, ``candidate_layers``) for a config's layer name: Keras' own, or for a VGG
    a Caffe/PyTorch alias (``relu4_2``, ``conv4_2``, ``conv_4`` = the fourth convolution) as the extractor reads
    them. A layer the panel does not offer (a pooling layer) is a one-line error, not a widget's TraitError."""
    names = candidate_layers(arch)  # a VGG's: its convolutions in order
    resolved = layer_alias(name, names, None if arch == "resnet50" else names)
    if resolved is None:
        raise ConfigError(f"the panel offers no layer {name!r} for {arch}; its layers: {', '.join(names)}")
    return resolved


def _weight(slider) -> float:
    """A weight slider's value; its leftmost position is 0 (off)."""
    value = float(slider.value)
    return 0.0 if value <= 10**slider.min * (1 + 1e-9) else value


def bundled_images(kind: str) -> dict[str, Path]:
    folder = DATA / kind
    return {p.stem: p for p in sorted(folder.glob("*")) if p.suffix.lower() in (".jpg", ".jpeg", ".png")}


def _choices(name: str) -> list:
    return list(StyleConfig.choices(name))


def _upload_item(upload) -> dict | None:
    """The uploaded file of a FileUpload: ipywidgets 8 holds a tuple of dicts, 7 a dict {name: dict}."""
    if not upload.value:
        return None
    return upload.value[0] if isinstance(upload.value, (list, tuple)) else next(iter(upload.value.values()))


@dataclass
class Job:
    """One optimisation of the panel: a live preview or a render, with its own stop flag."""

    kind: str  # "preview" or "render"
    inputs: tuple = ()  # the inputs' key (``StylePanel._inputs_key``): a warm start needs the same ones
    names: tuple[str, str] = ("", "")  # the content's and style's file names, for the record and the folder
    stop: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None
    result: object = None
    converged: bool = False
    adopted: bool = False  # stopped before it began: it shows the result of the job it replaced
    done: bool = False  # its results are in the widgets (set under the panel's lock)
    scales: int = 1  # of its schedule: the status names the scale where there are several

    def running(self) -> bool:
        return self.thread is not None and self.thread.is_alive()


class _PanelCallback(Callback):
    """Progress, the preview image (after the first step, then every ``preview_every``) and stopping: on Stop, when
    a newer job replaced this one, or, for a preview, once the loss has settled."""

    def __init__(self, panel: StylePanel, job: Job):
        self.panel, self.job, self.totals = panel, job, []
        self.done = 0  # steps over all scales: the bar spans the whole schedule

    def on_step(self, info: StepInfo):
        p, job = self.panel, self.job
        if job is not p._job:  # cancelled and replaced: leave the widgets to the new job
            return True
        self.totals.append(info.losses["total"])
        self.done += 1
        p.progress.value = min(self.done, p.progress.max)
        scale = f"scale {info.level + 1}/{job.scales}, " if job.scales > 1 else ""
        p.status.value = (
            f"{job.kind} {scale}step {info.step}/{info.steps}  loss {info.losses['total']:.4g}  "
            f"(content {info.losses['content']:.3g}, style {info.losses['style']:.3g})"
        )
        if info.step == 1 or info.step % p.preview_every == 0 or info.step == info.steps:
            p._show(info.image(), job)
        if job.kind == "preview" and settled(self.totals, p.settle_window, p.settle_tol):
            job.converged = True
            p._show(info.image(), job)
            return True
        return job.stop.is_set()


# a preview size is scaled to settle in this share of ``preview_seconds``: a step's fixed costs do not shrink with its
# pixels, and a smaller preview may need more steps. On the AMD EPYC a margin of 0.8 took 256 px to 144, where the
# hardest slider moves still ran to the 150-step cap in about 12 s (a run not kept); 0.7 takes it to 128 px, where
# every preview ended within 9.6 s (benchmarks/results/live_preview_adaptive_avx512_bf16.json)
PREVIEW_TIME_MARGIN = 0.7


def adapted_preview_size(
    side: int,
    settle_s: float,
    capped_s: float,
    target_s: float,
    smallest: int,
    largest: int,
    current: int | None = None,
) -> int:
    """The preview size for the next previews, from one that ran to its end at ``side`` px in ``settle_s``, and
    ``capped_s``: what all of its ``preview_steps`` would have taken there. A step's cost goes with the pixels, so
    the side scales with the square root of a time ratio (to a multiple of 16, between ``smallest`` and
    ``largest``). It shrinks when the preview took longer than ``target_s``, and grows only when even a preview
    that runs to the step cap would be in time at the larger size: how far a slider moved decides how many steps a
    preview takes (11 to 150 on the bundled pair), so growing on one quick preview would make the next hard one
    late again. ``current`` is the size previews run at now (``side`` unless the config's own size capped this one):
    a late preview never makes it larger, a quick one never smaller."""
    current = side if current is None else current
    if settle_s > target_s:
        ratio = PREVIEW_TIME_MARGIN * target_s / settle_s
    elif 0 < capped_s < PREVIEW_TIME_MARGIN * target_s:
        ratio = PREVIEW_TIME_MARGIN * target_s / capped_s
    else:
        return current
    new = max(min(smallest, largest), min(largest, 16 * round(side * math.sqrt(ratio) / 16)))
    return min(new, current) if settle_s > target_s else max(new, current)


def settled(totals: list[float], window: int, tol: float) -> bool:
    """The loss fell by less than ``tol`` (relative) over the last ``window`` steps: a preview has converged."""
    if len(totals) <= window:
        return False
    before, now = totals[-1 - window], totals[-1]
    return before - now <= tol * abs(now)


class StylePanel:
    """Content/style pickers, architecture, layers, log-scale α/β sliders, TV weight, size, steps, optimiser, seed,
    live preview, Render/Stop/Export, a preview image and a loss readout."""

    def __init__(
        self,
        config: StyleConfig | None = None,
        preview_every: int = 5,
        out: str | Path | None = None,
        live: bool = True,
        preview_size: int = 256,
        preview_steps: int = 150,  # enough to settle: β ×10 from the default settles after ~115 steps (bench_live.py)
        settle_window: int = 10,
        settle_tol: float = 0.01,
        preview_precision: str = "auto",
        preview_seconds: float | None = 10.0,
        preview_min_size: int = 128,
    ):
        """``preview_seconds``: how long a settled preview should take. After each preview that ran to its end,
        the preview size adapts (``adapted_preview_size``) so that the next one settles within it, between
        ``preview_min_size`` and ``preview_size``: on a slow CPU the sketch gets smaller rather than late. None
        keeps ``preview_size``. ``out``: where renders and exports go; None = ``NST_RESULTS_DIR`` when set (Google
        Drive with the notebooks' ``RESULTS_TO_DRIVE``), else ``results/`` in the working folder, as ``stylize``."""
        import ipywidgets as w

        self.defaults = config or StyleConfig()
        # where notebooks' runs go: NST_RESULTS_DIR (Google Drive on Colab), else results/ as for stylize
        self.preview_every = preview_every
        self.out = Path(out if out is not None else os.environ.get("NST_RESULTS_DIR") or RUNS_DIR)
        self.preview_size, self.preview_steps = preview_size, preview_steps
        self.preview_seconds, self.preview_min_size = preview_seconds, preview_min_size
        self.preview_side = preview_size  # the size previews run at now: preview_size until a preview is too slow
        self.settle_window, self.settle_tol = settle_window, settle_tol
        # a preview is a sketch of the render: a faster, less exact network pays there (benchmarks/bench_precision.py)
        self.preview_precision = preview_precision
        d = self.defaults
        contents, styles = bundled_images("content"), bundled_images("style")
        wide = {"description_width": "initial"}
        self.content = w.Dropdown(options=contents, description="content")
        self.style = w.Dropdown(options=styles, description="style")
        if "vangogh_starry_night" in styles:
            self.style.value = styles["vangogh_starry_night"]
        self.content_upload = w.FileUpload(accept="image/*", multiple=False, description="upload content")
        self.style_upload = w.FileUpload(accept="image/*", multiple=False, description="upload style")
        self.arch = w.Dropdown(options=_choices("arch"), value=d.arch, description="network")
        self.content_layer = w.Dropdown(description="content layer", style=wide)
        self.layer_boxes = w.VBox()
        # log-scale sliders, four decades either side of the default (α, β); they report a new value when released
        # (continuous_update=False), which is what starts a live preview. The leftmost position is 0 (off), so
        # that a config with a weight of 0 (gatys2016's TV) is shown and rendered as it is
        log = dict(base=10, readout_format=".1e", continuous_update=False)

        def centred(value: float) -> tuple[float, float]:
            exp = float(np.log10(value)) if value > 0 else 0.0
            return exp - 4, exp + 4

        lo, hi = centred(d.content_weight)
        self.alpha = w.FloatLogSlider(
            value=d.content_weight or 10**lo, min=lo, max=hi, step=0.1, description="α content", **log
        )
        lo, hi = centred(d.style_weight)
        self.beta = w.FloatLogSlider(
            value=d.style_weight or 10**lo, min=lo, max=hi, step=0.1, description="β style", **log
        )
        # TV: 1e-6 to 1e3, wider where the config's value lies outside
        exp = float(np.log10(d.tv_weight)) if d.tv_weight > 0 else 0.0
        lo, hi = min(-6.0, math.floor(exp) - 1), max(3.0, math.ceil(exp) + 1)
        self.tv = w.FloatLogSlider(value=d.tv_weight or 10**lo, min=lo, max=hi, step=0.25, description="TV", **log)
        self.size = w.IntSlider(value=d.size, min=32, max=max(1024, d.size), step=16, description="size")
        self.steps = w.IntSlider(value=d.steps, min=1, max=max(1000, 4 * d.steps), step=1, description="steps")
        self.optimizer = w.Dropdown(options=_choices("optimizer"), value=d.optimizer, description="optimiser")
        self.seed = w.IntText(value=d.seed, description="seed")
        self.live = w.Checkbox(value=live, description=f"live preview ({preview_size} px)", indent=False)
        self.render_button = w.Button(description="Render", button_style="success", icon="play")
        self.stop_button = w.Button(description="Stop", button_style="danger", icon="stop", disabled=True)
        self.export_button = w.Button(description="Export", icon="save", disabled=True)
        self.progress = w.IntProgress(value=0, min=0, max=d.steps, description="progress")
        self.status = w.Label(value="ready: move a weight slider for a live preview, or press Render")
        self.preview = w.Image(format="png", width=min(d.size, 512))
        self.message = w.HTML()
        self.image: np.ndarray | None = None  # the image on show
        self.result = None  # the StyleResult of the last finished job
        self.run_dir: Path | None = None  # the last render's run folder
        self._job: Job | None = None
        self._shown_inputs = None  # the inputs of the image on show: a warm start needs the same ones
        self._result_names = ("", "")  # the file names the result was made from (Export records them)
        self._uploaded = {"content": False, "style": False}  # use the upload, not the dropdown (the later choice)
        self._preview_after_render = False  # a slider moved during a render
        self._preview_inputs_cache: tuple | None = None  # (inputs key, content, style), decoded
        self._lock = threading.Lock()

        self.arch.observe(lambda change: self._set_layers(change["new"]), names="value")
        # each input's dropdown and upload; whichever was chosen last is the input (a bundled image picked after an
        # upload replaces it)
        self._pickers = {"content": (self.content, self.content_upload), "style": (self.style, self.style_upload)}
        for which, (dropdown, upload) in self._pickers.items():
            dropdown.observe(lambda _, which=which: self._uploaded.update({which: False}), names="value")
            upload.observe(lambda _, which=which: self._uploaded.update({which: True}), names="value")
        self._set_layers(d.arch, d.content_layers, d.style_layers)
        for slider in (self.alpha, self.beta, self.tv):
            slider.observe(self._weight_changed, names="value")
        self.render_button.on_click(lambda _: self.render())
        self.stop_button.on_click(lambda _: self.stop())
        self.export_button.on_click(lambda _: self.export())
        controls = w.VBox(
            [
                w.HBox([self.content, self.content_upload]),
                w.HBox([self.style, self.style_upload]),
                self.arch,
                self.content_layer,
                w.Label("style layers"),
                self.layer_boxes,
                self.alpha,
                self.beta,
                self.tv,
                self.size,
                self.steps,
                self.optimizer,
                self.seed,
                self.live,
                w.HBox([self.render_button, self.stop_button, self.export_button]),
            ]
        )
        self.widget = w.HBox([controls, w.VBox([self.preview, self.progress, self.status, self.message])])

    def _ipython_display_(self):
        from IPython.display import display

        display(self.widget)

    def _set_layers(self, arch: str, content_layers=None, style_layers=None) -> None:
        import ipywidgets as w

        preset = LAYER_PRESETS[arch]
        names = candidate_layers(arch)
        self.content_layer.options = names
        self.content_layer.value = panel_layer((content_layers or preset["content"])[0], arch)
        chosen = {panel_layer(n, arch) for n in style_layers or preset["style"]}
        self.layer_boxes.children = [w.Checkbox(value=n in chosen, description=n, indent=False) for n in names]

    # --- state -----------------------------------------------------------------------------------
    def config(self) -> StyleConfig:
        """The full-size configuration the controls describe (what Render runs). Layers left as the given config
        had them keep its names, its other content layers and its style layer weights."""
        d = self.defaults
        arch = self.arch.value
        style_layers = tuple(b.description for b in self.layer_boxes.children if b.value)
        if not style_layers:
            raise ConfigError("tick at least one style layer")
        content_layers, layer_weights = (self.content_layer.value,), None
        if arch == d.arch:  # as given where left as shown (None: the network's preset)
            given_content = d.content_layers or LAYER_PRESETS[arch]["content"]
            if panel_layer(given_content[0], arch) == content_layers[0]:
                content_layers = d.content_layers
            if {panel_layer(n, arch) for n in d.style_layers or LAYER_PRESETS[arch]["style"]} == set(style_layers):
                style_layers, layer_weights = d.style_layers, d.style_layer_weights
        return d.replace(
            arch=arch,
            content_layers=content_layers,
            style_layers=style_layers,
            style_layer_weights=layer_weights,
            content_weight=_weight(self.alpha),
            style_weight=_weight(self.beta),
            tv_weight=_weight(self.tv),
            size=int(self.size.value),
            steps=int(self.steps.value),
            optimizer=self.optimizer.value,
            seed=int(self.seed.value),
        )

    def preview_config(self) -> StyleConfig:
        """The live preview's configuration: the same settings at the preview size, one scale (a warm start at the
        preview size starts close to the new optimum, an upsampled coarse pass far above it), at most ``preview_steps``
        steps, at ``preview_precision``, nothing saved."""
        config = self.config()
        return config.replace(
            size=min(self.preview_side, config.size),
            steps=self.preview_steps,
            pyramid_levels=1,
            snapshot_every=0,
            precision=self.preview_precision,
        )

    def _upload(self, which: str):
        """The uploaded file of ``which`` (content, style) where it, not the dropdown, was chosen last."""
        return _upload_item(self._pickers[which][1]) if self._uploaded[which] else None

    def _input(self, which: str):
        item = self._upload(which)
        if item is None:
            return self._pickers[which][0].value
        try:  # decoded here, so that a bad file is named now and not by an error deep in the optimisation
            image = Image.open(io.BytesIO(bytes(item["content"])))
            image.load()
        except (OSError, SyntaxError, ValueError) as exc:
            raise ImageError(f"{_upload_name(item)}: not an image, or a truncated one ({exc})") from None
        image.filename = f"{_upload_name(item)} (uploaded)"  # what run records and messages call it
        return image

    def _inputs_key(self):
        def key(which):
            item = self._upload(which)
            if item is None:
                return str(self._pickers[which][0].value)
            return "upload", len(bytes(item["content"])), hash(bytes(item["content"]))

        return key("content"), key("style")

    def _names(self) -> tuple[str, str]:
        def name(which):
            item = self._upload(which)
            return _upload_name(item) if item else str(self._pickers[which][0].value)

        return name("content"), name("style")

    # --- actions ---------------------------------------------------------------------------------
    def _weight_changed(self, change) -> None:
        if not self.live.value:
            return
        with self._lock:  # decided against _finish: a render that has put its result up no longer defers
            job = self._job
            deferred = job is not None and job.kind == "render" and job.thread is not None and not job.done
            if deferred:
                self._preview_after_render = True
        if deferred:
            self.message.value = "rendering: the live preview resumes after the render (or press Stop)"
            return
        self.start_preview()

    def start_preview(self, wait: bool = False) -> Job:
        """Re-optimise at the preview size with the current settings, warm-started from the image on show when it
        is of the same inputs, cancelling any preview under way (what releasing a weight slider does)."""
        warm = self.image if self._shown_inputs == self._inputs_key() else None  # the inputs of the image on show
        return self._start("preview", self._shown_errors(self.preview_config), None, warm, wait)

    def render(self, wait: bool = False) -> Job:
        """The full-size stylisation with the current settings as a recorded run: a run folder under ``out``
        (``run_dir`` once it ends). Cancels a preview under way."""
        if self._job is not None and self._job.kind == "render" and self._job.running():
            return self._job
        return self._start("render", self._shown_errors(self.config), self.out, None, wait)

    def _shown_errors(self, build):
        """``build()``, its error also shown in the panel: a slider's or button's own error goes to a log nobody
        reads."""
        try:
            return build()
        except NSTError as exc:
            self.message.value = f"<span style='color:#b00'>{exc}</span>"
            raise

    def _start(self, kind: str, config: StyleConfig, out, initial, wait: bool) -> Job:
        content, style = self._shown_errors(lambda: (self._input("content"), self._input("style")))
        job = Job(kind, inputs=self._inputs_key(), names=self._names())
        with self._lock:
            if kind == "render":  # a slider moved before this render has no preview owed to it
                self._preview_after_render = False
            previous, self._job = self._job, job
            if previous is not None:
                previous.stop.set()
            plan = schedule(config, config.size)
            job.scales = len(plan)
            self.progress.max, self.progress.value = sum(scale.steps for scale in plan), 0
            self.stop_button.disabled, self.export_button.disabled = False, True
            self.render_button.disabled = kind == "render"
            self.message.value = ""
            job.thread = threading.Thread(
                target=self._work,
                args=(job, previous, content, style, config, out, initial),
                daemon=True,
            )
            job.thread.start()
        if wait:
            job.thread.join()
        return job

    def _work(self, job: Job, previous: Job | None, content, style, config, out, initial) -> None:
        try:
            if previous is not None and previous.thread is not None:
                previous.thread.join()  # one optimisation at a time: the cancelled one stops after its current step
            if job.stop.is_set():  # Stop before it began: what is on show is the replaced job's
                if previous is not None and previous.result is not None:
                    job.result, job.inputs, job.names, job.adopted = (
                        previous.result,
                        previous.inputs,
                        previous.names,
                        True,
                    )
                return
            if job.kind == "preview":
                content, style = self._preview_inputs(content, style, job.inputs)
            job.result = stylize(
                content,
                style,
                config,
                out=out,
                name=_run_name(*job.names) if out is not None else None,
                progress=False,
                initial=initial,
                callbacks=[_PanelCallback(self, job)],
            )
        except Exception as exc:  # whatever it is, the panel says it (a thread's traceback goes to a log)
            if job is self._job:
                text = str(exc) if isinstance(exc, NSTError) else f"{type(exc).__name__}: {exc}"
                self.message.value = f"<span style='color:#b00'>{text}</span>"
        finally:
            self._finish(job)

    def _preview_inputs(self, content, style, inputs) -> tuple[DecodedImage, DecodedImage]:
        """The content and style decoded, kept for the next preview of the same inputs (``stylize`` still resizes
        them, names them and checks them as it does the files): decoding the bundled pair took 28 ms of every
        preview. Runs in the job's thread, one job at a time."""
        key = (inputs, _modified(content), _modified(style))  # a file saved again is decoded again
        if self._preview_inputs_cache is None or self._preview_inputs_cache[0] != key:
            self._preview_inputs_cache = (key, DecodedImage(content), DecodedImage(style))
        return self._preview_inputs_cache[1:]

    def _show(self, image: np.ndarray, job: Job) -> None:
        if job is self._job:
            self.image = image
            self._shown_inputs = job.inputs  # every step's image is of its job's inputs
            self.preview.value = png_bytes(image)

    def _finish(self, job: Job) -> None:
        with self._lock:
            job.done = True
            if job is not self._job:  # replaced by a newer job, which owns the widgets now
                return
            result = job.result
            if result is not None:
                self.result, self._result_names = result, job.names
                self._show(result.image, job)
                steps = len(result.history)
                loss = f"loss {result.history[-1]['total']:.4g}" if result.history else "no step"
                state = "converged" if job.converged else result.status
                what = "stopped; on show: the last preview's" if job.adopted else f"{job.kind} {state}"
                self.status.value = f"{what}: {steps} steps at {max(result.image.shape[:2])} px, {loss}"
                if job.kind == "preview" and not job.adopted and (job.converged or result.status == "completed"):
                    self._adapt_preview_size(result)
                if job.kind == "render" and not job.adopted:
                    self.run_dir = result.run_dir
                    done = "rendered to" if result.status == "completed" else f"render {result.status}, in"
                    self.message.value = f"{done} {result.run_dir}"
            elif job.stop.is_set():
                self.status.value = f"{job.kind} stopped before its first step"
            self.render_button.disabled, self.stop_button.disabled = False, True
            self.export_button.disabled = self.result is None
            resume_preview = job.kind == "render" and self._preview_after_render and self.live.value
            self._preview_after_render = False
        if resume_preview and not job.stop.is_set():  # the slider moved during the render: its preview now
            try:
                self.start_preview()
            except NSTError:
                pass  # the panel's message says what is wrong with the inputs

    def _adapt_preview_size(self, result) -> None:
        """After a preview that ran to its end: the size at which the next ones settle within ``preview_seconds``.
        Its time per step is that after its first step (which includes tracing a new size)."""
        times = [row["time_s"] for row in result.history]
        if self.preview_seconds is None or len(times) < 3:
            return
        side = max(result.image.shape[:2])  # below preview_side where the config's own size is smaller
        per_step = (times[-1] - times[0]) / (len(times) - 1)
        settle_s, capped_s = len(times) * per_step, self.preview_steps * per_step
        new = adapted_preview_size(
            side, settle_s, capped_s, self.preview_seconds, self.preview_min_size, self.preview_size, self.preview_side
        )
        if new != self.preview_side:
            self.preview_side = new
            self.live.description = f"live preview ({new} px)"
            self.status.value += f"; next previews at {new} px to settle within {self.preview_seconds:g} s"

    def stop(self) -> None:
        """Stop the preview or render under way (after its current step)."""
        if self._job is not None:
            self._job.stop.set()

    def wait(self, timeout: float | None = None) -> None:
        """Block until the current job ends (tests, scripts)."""
        job = self._job
        if job is not None and job.thread is not None:
            job.thread.join(timeout)

    def export(self) -> Path:
        """Write the image on show, its config and the loss curve to a new run folder."""
        if self.result is None:
            raise RuntimeError("nothing to export: move a slider or press Render first")
        content, style = self._result_names  # what the result was made from, whatever the pickers show now
        try:
            path = save_result(
                self.result, self.out, _run_name(content, style), {"content": content, "styles": [style]}
            )
            curve = loss_curves({"run": self.result.history}, title="loss")
            save_figure(curve, path / "loss_curve.png", formats=("png",))
        except (NSTError, OSError) as exc:
            self.message.value = f"<span style='color:#b00'>export failed: {exc}</span>"
            raise
        self.message.value = f"exported to {path}"
        return path


def _modified(src) -> int | None:
    """A file's modification time (ns), None for anything else or a file that is not there."""
    try:
        return Path(src).stat().st_mtime_ns if isinstance(src, (str, Path)) else None
    except OSError:
        return None


def _upload_name(item: dict) -> str:
    """An uploaded file's name: ipywidgets 8 puts it in the item, 7 in its metadata."""
    return str(item.get("name") or item.get("metadata", {}).get("name") or "upload")


def _run_name(content: str, style: str) -> str:
    return f"panel_{Path(content).stem}_x_{Path(style).stem}"
