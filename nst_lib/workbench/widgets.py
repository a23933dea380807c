"""An ipywidgets panel for interactive style transfer (plain ipywidgets, so it works in Colab and JupyterLab
without custom widget managers). Defaults and choices come from ``StyleConfig``.

    from nst_lib.workbench.widgets import StylePanel
    panel = StylePanel(); panel            # in a notebook cell

The optimisation runs in a background thread, so the Stop button and the live preview work while it runs.
Runs are not saved until Export, which writes the current image, its config and the loss curve to a new
run folder.
"""

from __future__ import annotations

import io
import threading
from pathlib import Path

import numpy as np
from PIL import Image

from ..config import StyleConfig
from ..errors import NSTError
from ..features import LAYER_PRESETS
from ..images import png_bytes
from ..optim import Callback, StepInfo
from ..transfer import save_result, stylize
from .viz import loss_curves, save_figure

DATA = Path(__file__).resolve().parents[2] / "data"
VGG_LAYERS = [f"block{b}_conv{i}" for b, n in ((1, 2), (2, 2), (3, 4), (4, 4), (5, 4)) for i in range(1, n + 1)]
RESNET_LAYERS = ["conv1_relu", "conv2_block3_out", "conv3_block4_out", "conv4_block6_out", "conv5_block3_out"]


def candidate_layers(arch: str) -> list[str]:
    """Layers offered as checkboxes: every VGG conv layer; the stage outputs of ResNet50."""
    return RESNET_LAYERS if arch == "resnet50" else VGG_LAYERS[: 12 if arch == "vgg16" else None]


def bundled_images(kind: str) -> dict[str, Path]:
    folder = DATA / kind
    return {p.stem: p for p in sorted(folder.glob("*")) if p.suffix.lower() in (".jpg", ".jpeg", ".png")}


def _choices(name: str) -> list:
    return list(StyleConfig.choices(name))


class _PanelCallback(Callback):
    def __init__(self, panel: StylePanel):
        self.panel = panel

    def on_step(self, info: StepInfo):
        p = self.panel
        p.progress.value = info.step
        p.status.value = (
            f"step {info.step}/{info.steps}  loss {info.losses['total']:.4g}  "
            f"(content {info.losses['content']:.3g}, style {info.losses['style']:.3g})"
        )
        if info.step % p.preview_every == 0 or info.step == info.steps:
            p.image = info.image()
            p.preview.value = png_bytes(p.image)
        return p._stop.is_set()


class StylePanel:
    """Content/style pickers, architecture, layers, log-scale alpha/beta sliders, TV weight, size, steps,
    optimiser, seed, Run/Stop/Export, a live preview and a loss readout."""

    def __init__(self, config: StyleConfig | None = None, preview_every: int = 10, out: str | Path = "results"):
        import ipywidgets as w

        self.defaults = config or StyleConfig()
        self.preview_every, self.out = preview_every, Path(out)
        d = self.defaults
        contents, styles = bundled_images("content"), bundled_images("style")
        self.content = w.Dropdown(options=contents, description="content")
        self.style = w.Dropdown(options=styles, description="style")
        if "vangogh_starry_night" in styles:
            self.style.value = styles["vangogh_starry_night"]
        self.content_upload = w.FileUpload(accept="image/*", multiple=False, description="upload content")
        self.style_upload = w.FileUpload(accept="image/*", multiple=False, description="upload style")
        self.arch = w.Dropdown(options=_choices("arch"), value=d.arch, description="network")
        self.content_layer = w.Dropdown(description="content layer")
        self.layer_boxes = w.VBox()
        # log-scale sliders: four decades either side of the default
        self.alpha = w.FloatLogSlider(
            value=d.content_weight, base=10, min=-4, max=4, step=0.1, description="α content", readout_format=".1e"
        )
        beta_exp = float(np.log10(d.style_weight))
        self.beta = w.FloatLogSlider(
            value=d.style_weight,
            base=10,
            min=beta_exp - 4,
            max=beta_exp + 4,
            step=0.1,
            description="β style",
            readout_format=".1e",
        )
        self.tv = w.FloatLogSlider(
            value=max(d.tv_weight, 1e-6), base=10, min=-6, max=3, step=0.25, description="TV", readout_format=".1e"
        )
        self.size = w.IntSlider(value=d.size, min=32, max=max(1024, d.size), step=16, description="size")
        self.steps = w.IntSlider(value=d.steps, min=1, max=max(1000, 4 * d.steps), step=1, description="steps")
        self.optimizer = w.Dropdown(options=_choices("optimizer"), value=d.optimizer, description="optimiser")
        self.seed = w.IntText(value=d.seed, description="seed")
        self.run_button = w.Button(description="Run", button_style="success", icon="play")
        self.stop_button = w.Button(description="Stop", button_style="danger", icon="stop", disabled=True)
        self.export_button = w.Button(description="Export", icon="save", disabled=True)
        self.progress = w.IntProgress(value=0, min=0, max=d.steps, description="progress")
        self.status = w.Label(value="ready")
        self.preview = w.Image(format="png", width=min(d.size, 512))
        self.message = w.HTML()
        self.image: np.ndarray | None = None
        self.result = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

        self.arch.observe(lambda change: self._set_layers(change["new"]), names="value")
        self._set_layers(d.arch, d.content_layers, d.style_layers)
        self.run_button.on_click(lambda _: self.run())
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
                w.HBox([self.run_button, self.stop_button, self.export_button]),
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
        self.content_layer.value = (content_layers or preset["content"])[0]
        chosen = set(style_layers or preset["style"])
        self.layer_boxes.children = [w.Checkbox(value=n in chosen, description=n, indent=False) for n in names]

    # --- state -----------------------------------------------------------------------------------
    def config(self) -> StyleConfig:
        style_layers = tuple(b.description for b in self.layer_boxes.children if b.value)
        return self.defaults.replace(
            arch=self.arch.value,
            content_layers=(self.content_layer.value,),
            style_layers=style_layers or None,
            style_layer_weights=None,
            content_weight=float(self.alpha.value),
            style_weight=float(self.beta.value),
            tv_weight=float(self.tv.value),
            size=int(self.size.value),
            steps=int(self.steps.value),
            optimizer=self.optimizer.value,
            seed=int(self.seed.value),
        )

    def _input(self, dropdown, upload):
        if upload.value:
            item = upload.value[0] if isinstance(upload.value, (list, tuple)) else next(iter(upload.value.values()))
            return Image.open(io.BytesIO(bytes(item["content"])))
        return dropdown.value

    # --- actions ---------------------------------------------------------------------------------
    def run(self, wait: bool = False) -> None:
        """Start a run in a background thread (``wait=True`` blocks until it ends: tests, scripts)."""
        if self._thread is not None and self._thread.is_alive():
            return
        config = self.config()
        self._stop.clear()
        self.progress.max, self.progress.value = config.steps, 0
        self.run_button.disabled, self.stop_button.disabled, self.export_button.disabled = True, False, True
        self.message.value = ""
        content, style = self._input(self.content, self.content_upload), self._input(self.style, self.style_upload)
        self._thread = threading.Thread(target=self._work, args=(content, style, config), daemon=True)
        self._thread.start()
        if wait:
            self._thread.join()

    def _work(self, content, style, config) -> None:
        try:
            self.result = stylize(content, style, config, out=None, progress=False, callbacks=[_PanelCallback(self)])
            self.image = self.result.image
            self.preview.value = png_bytes(self.image)
            self.status.value = f"{self.result.status}: {len(self.result.history)} steps, " + (
                f"loss {self.result.history[-1]['total']:.4g}" if self.result.history else "no step"
            )
        except NSTError as exc:
            self.message.value = f"<span style='color:#b00'>{exc}</span>"
        finally:
            self.run_button.disabled, self.stop_button.disabled = False, True
            self.export_button.disabled = self.result is None

    def stop(self) -> None:
        self._stop.set()

    def wait(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    def export(self) -> Path:
        """Write the current image, its config and the loss curve to a new run folder."""
        if self.result is None:
            raise RuntimeError("nothing to export: press Run first")
        content_name = Path(str(self.content.value)).stem if not self.content_upload.value else "upload"
        style_name = Path(str(self.style.value)).stem if not self.style_upload.value else "upload"
        inputs = {"content": str(self.content.value), "styles": [str(self.style.value)]}
        path = save_result(self.result, self.out, f"panel_{content_name}_x_{style_name}", inputs)
        save_figure(loss_curves({"run": self.result.history}, title="loss"), path / "loss_curve.png", formats=("png",))
        self.message.value = f"exported to {path}"
        return path
