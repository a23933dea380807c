"""Training throughput of the generative models: DCGAN at batch 128, 64 px (seed 004 §3.2) with and without
XLA compilation, and VAE-GAN at the same settings, in images per second.

Each variant trains through ``model.fit`` on the bundled tiny painting set (what ``nst_lib.models.train``
runs); after one warm-up epoch (tracing, XLA compilation) rounds of ``--steps`` steps alternate between
the variants and the median round is reported. The ratio XLA / no XLA is the figure to compare across
machines. Writes benchmarks/results/gan_throughput.json.
"""

from __future__ import annotations

import argparse
import statistics
import time

from common import write


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=4, help="steps per timed round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--no-vaegan", action="store_true")
    args = parser.parse_args()

    from nst_lib.models import DCGAN, VAEGAN
    from nst_lib.models.data import tiny_paintings

    data = tiny_paintings(args.batch * args.steps, args.size, seed=0)
    variants = {
        "dcgan": DCGAN(image_size=args.size, batch_size=args.batch, jit_compile=False),
        "dcgan_xla": DCGAN(image_size=args.size, batch_size=args.batch, jit_compile=True),
    }
    if not args.no_vaegan:
        variants["vaegan"] = VAEGAN(image_size=args.size, batch_size=args.batch, jit_compile=False)
        variants["vaegan_xla"] = VAEGAN(image_size=args.size, batch_size=args.batch, jit_compile=True)

    def epoch(model) -> float:
        t = time.perf_counter()
        model.fit(data.dataset(args.batch, seed=0), epochs=1, steps_per_epoch=args.steps, verbose=0, shuffle=False)
        return time.perf_counter() - t

    warmup = {}
    for name, model in variants.items():
        warmup[name] = round(epoch(model), 2)
        print(f"{name}: warm-up epoch {warmup[name]} s", flush=True)
    times: dict[str, list[float]] = {name: [] for name in variants}
    for r in range(args.rounds):
        for name, model in variants.items():
            times[name].append(epoch(model))
        print(f"round {r + 1}: " + ", ".join(f"{n} {t[-1]:.2f} s" for n, t in times.items()), flush=True)

    results = {}
    for name, ts in times.items():
        median = statistics.median(ts)
        results[name] = {
            "images_per_s": round(args.batch * args.steps / median, 1),
            "step_s": round(median / args.steps, 4),
            "warmup_epoch_s": warmup[name],
        }
    ratios = {"dcgan_xla_over_plain": round(results["dcgan_xla"]["images_per_s"] / results["dcgan"]["images_per_s"], 3)}
    if "vaegan" in results:
        ratios["vaegan_xla_over_plain"] = round(
            results["vaegan_xla"]["images_per_s"] / results["vaegan"]["images_per_s"], 3
        )
        ratios["vaegan_over_dcgan"] = round(results["vaegan"]["images_per_s"] / results["dcgan"]["images_per_s"], 3)
    for name, r in results.items():
        print(f"{name:12s} {r['images_per_s']:8.1f} images/s   ({r['step_s']:.3f} s/step)")
    print("ratios:", ratios)
    write(
        "gan_throughput",
        {
            "settings": {"batch": args.batch, "size": args.size, "steps_per_round": args.steps, "rounds": args.rounds},
            "results": results,
            "ratios": ratios,
        },
    )


if __name__ == "__main__":
    main()
