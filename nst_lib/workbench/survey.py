"""A blind deception survey (seed 002 §IV): respondents see real painting crops and stylisations in a
seeded random order, one at a time, and say "painting" or "generated". The deception rate is the share of
generated images taken for paintings, reported with a Wilson score interval.

    survey = DeceptionSurvey.create(run_dir / "survey", real=painting_crops, generated=stylisations)
    survey.widget()                       # in a notebook; every answer is appended to answers.csv
    survey.report()                       # {'deception_rate': …, 'low': …, 'high': …, 'n_generated': …}

The folder holds the shuffled images (``items/item_000.png`` …, names that give nothing away), the answer
key (``key.json``, which the widget never shows) and ``answers.csv`` (one row per answer: time, respondent,
item, truth, answer, seconds). Answers are only ever appended, so several respondents and interrupted
sessions accumulate; ``report`` reads the CSV, so it can be recomputed at any time.
"""

from __future__ import annotations

import csv
import json
import time
import uuid
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from statistics import NormalDist

import numpy as np
from PIL import Image

from ..errors import NSTError
from ..images import load_image, png_bytes, save_image, to_uint8

ANSWERS = ("painting", "generated")
FIELDS = ("time", "respondent", "item", "truth", "answer", "seconds")


def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion (Wilson 1927):
    (p̂ + z²/2n ± z·√(p̂(1−p̂)/n + z²/4n²)) / (1 + z²/n), z the (1+confidence)/2 normal quantile.
    Unlike p̂ ± z·√(p̂(1−p̂)/n) it stays inside [0, 1] and is not empty at 0 or n successes."""
    if n <= 0:
        return (0.0, 1.0)
    if not 0 <= successes <= n:
        raise ValueError(f"successes must be in [0, {n}], got {successes}")
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def read_answers(path: str | Path) -> list[dict]:
    path = Path(path)
    if not path.is_file():
        return []
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    for i, r in enumerate(rows, 2):
        if r.get("truth") not in ANSWERS or r.get("answer") not in ANSWERS:
            raise NSTError(f"{path}: line {i}: truth and answer must be one of {', '.join(ANSWERS)}, got {r}")
    return rows


def deception_rate(answers: str | Path | list[dict], confidence: float = 0.95) -> dict:
    """From the answers (a CSV path or its rows): the share of generated images answered "painting", with
    its Wilson interval, and how often real paintings were recognised (a respondent who answers at random
    scores about ½ on both)."""
    rows = read_answers(answers) if isinstance(answers, (str, Path)) else list(answers)
    # one judgement per respondent and item, the last given (two panels of one respondent can answer an item twice)
    rows = list({(r["respondent"], str(r["item"])): r for r in rows}.values())
    generated = [r for r in rows if r["truth"] == "generated"]
    real = [r for r in rows if r["truth"] == "painting"]
    fooled = sum(r["answer"] == "painting" for r in generated)
    low, high = wilson_interval(fooled, len(generated), confidence)
    return {
        "deception_rate": fooled / len(generated) if generated else float("nan"),
        "low": low,
        "high": high,
        "confidence": confidence,
        "n_generated": len(generated),
        "n_fooled": fooled,
        "n_real": len(real),
        "real_recognised": sum(r["answer"] == "painting" for r in real) / len(real) if real else float("nan"),
        "respondents": len({r["respondent"] for r in rows}),
    }


@dataclass
class DeceptionSurvey:
    folder: Path
    truth: list[str]

    @classmethod
    def create(
        cls, folder: str | Path, real: np.ndarray, generated: np.ndarray, seed: int = 0, description: str = ""
    ) -> DeceptionSurvey:
        """Write the shuffled items and the answer key into ``folder``. An existing survey there is opened
        as it is (its items and answers are kept, never overwritten)."""
        folder = Path(folder)
        if (folder / "key.json").is_file():
            return cls.open(folder)
        # uint8, or floats in 0..1 or 0..255 as everywhere in the library (a cast would make 0..1 floats black)
        real, generated = ([to_uint8(load_image(im)) for im in images] for images in (real, generated))
        if len(real) == 0 or len(generated) == 0:
            raise NSTError("a deception survey needs real and generated images")
        images = [*real, *generated]
        shapes = sorted({im.shape[:2] for im in images})
        if len(shapes) > 1:  # a size or an aspect of their own would tell the real ones from the generated
            raise NSTError(
                f"a deception survey's images must share one size, got {', '.join(f'{h}×{w}' for h, w in shapes)}: "
                "crop and resize them alike (images.centre_crop_resize)"
            )
        truth = ["painting"] * len(real) + ["generated"] * len(generated)
        order = np.random.default_rng(seed).permutation(len(images))
        (folder / "items").mkdir(parents=True, exist_ok=True)
        for i, k in enumerate(order):
            save_image(folder / "items" / f"item_{i:03d}.png", images[k])
        key = {
            "truth": [truth[k] for k in order],
            "seed": seed,
            "description": description,
            "created": datetime.now().isoformat(timespec="seconds"),
        }
        partial = folder / "key.json.partial"  # the key last: a survey without it is made again, never half-read
        partial.write_text(json.dumps(key, indent=1))
        partial.replace(folder / "key.json")
        return cls(folder, key["truth"])

    @classmethod
    def open(cls, folder: str | Path) -> DeceptionSurvey:
        folder = Path(folder)
        if not (folder / "key.json").is_file():
            raise NSTError(f"{folder}: no survey here (key.json missing)")
        return cls(folder, json.loads((folder / "key.json").read_text())["truth"])

    @property
    def answers_file(self) -> Path:
        return self.folder / "answers.csv"

    def __len__(self) -> int:
        return len(self.truth)

    def image(self, item: int) -> np.ndarray:
        return load_image(self.folder / "items" / f"item_{item:03d}.png").astype(np.uint8)

    def remaining(self, respondent: str) -> list[int]:
        """Items this respondent has not answered yet, in the survey's order."""
        done = {int(r["item"]) for r in read_answers(self.answers_file) if r["respondent"] == respondent}
        return [i for i in range(len(self)) if i not in done]

    def answer(self, respondent: str, item: int, answer: str, seconds: float = float("nan")) -> None:
        """Append one answer to answers.csv."""
        if answer not in ANSWERS:
            raise NSTError(f"answer must be one of {', '.join(ANSWERS)}, got {answer!r}")
        if not 0 <= item < len(self):
            raise NSTError(f"item {item} is not in this survey of {len(self)}")
        new = not self.answers_file.exists()
        with self.answers_file.open("a", newline="") as f:
            w = csv.DictWriter(f, fieldnames=FIELDS)
            if new:
                w.writeheader()
            w.writerow(
                {
                    "time": datetime.now().isoformat(timespec="seconds"),
                    "respondent": respondent,
                    "item": item,
                    "truth": self.truth[item],
                    "answer": answer,
                    "seconds": round(seconds, 2),
                }
            )

    def report(self, confidence: float = 0.95) -> dict:
        return deception_rate(self.answers_file, confidence)

    def widget(self, respondent: str | None = None, size: int = 256):
        """An ipywidgets panel: one image at a time, two buttons, then the result. Answers go to the CSV
        as they are given; re-opening with the same ``respondent`` continues where they stopped. Without a name
        each panel is a new anonymous respondent (one shared default name would count two people as one, and
        show the second one "Done")."""
        import ipywidgets as w

        respondent = respondent or f"anonymous-{uuid.uuid4().hex[:8]}"
        queue = self.remaining(respondent)
        img = w.Image(format="png", width=size, height=size)
        buttons = [
            w.Button(description="Painting", button_style="info"),
            w.Button(description="Generated", button_style="warning"),
        ]
        status = w.HTML()
        shown = {"t": time.perf_counter()}

        def show():
            if not queue:
                r = self.report()
                img.layout.display = "none"
                for b in buttons:
                    b.disabled = True
                status.value = (
                    f"<b>Done.</b> Deception rate over all respondents: {r['deception_rate']:.0%} "
                    f"({r['n_fooled']}/{r['n_generated']}; "
                    f"{r['confidence']:.0%} interval {r['low']:.0%}–{r['high']:.0%})"
                    if r["n_generated"]
                    else "<b>Done.</b>"
                )
                return

            big = np.asarray(Image.fromarray(self.image(queue[0])).resize((size, size), Image.NEAREST))
            img.value = png_bytes(big)
            status.value = f"{len(self) - len(queue) + 1} / {len(self)} — painting or generated?"
            shown["t"] = time.perf_counter()

        def on_click(answer):
            def handler(_):
                if queue:
                    for b in buttons:  # a double click must not answer the next item before it is seen
                        b.disabled = True
                    self.answer(respondent, queue.pop(0), answer, time.perf_counter() - shown["t"])
                    show()
                    for b in buttons:
                        b.disabled = not queue

            return handler

        buttons[0].on_click(on_click("painting"))
        buttons[1].on_click(on_click("generated"))
        show()
        return w.VBox([img, w.HBox(buttons), status])
