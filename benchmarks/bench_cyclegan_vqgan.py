"""Training speed of CycleGAN and VQGAN (images per second) and what their train steps add over the bare
network math, plus the time per guided-generation iteration.

For each model the *floor* is the same loss terms' forward and backward passes in one ``tf.function`` with
no optimiser update and nothing else: for CycleGAN, the generator losses and their gradients plus the
discriminator losses and theirs (on the fresh fakes, no image pool); for VQGAN, L_VQ + GAN term and one
gradient, plus the discriminator's. ``step_over_floor`` is the full ``train_step`` through ``model.fit`` (Adam
updates, the image pools; for VQGAN the second backward pass that the adaptive weight needs and the dead-code
restarts) over that floor. Rounds of ``--steps`` steps alternate between variants after a warm-up epoch, each
variant's steps followed by its floor for as many steps; ``step_over_floor`` is the median of the rounds' own
ratios, the images per second are the median round's. Writes benchmarks/results/cyclegan_vqgan_throughput.json.
"""

from __future__ import annotations

import argparse
import statistics
import time

from common import median_time, write


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=4, help="steps per timed round")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    import tensorflow as tf

    from nst_lib.models import VQGAN, CycleGAN
    from nst_lib.models.data import ContentStyleData, tiny_paintings, tiny_photos, union
    from nst_lib.models.losses import hinge_discriminator_loss, hinge_generator_loss, lsgan_discriminator_loss

    variants = {  # name: (model, batch, size)
        "cyclegan_64px_f32_batch4": (CycleGAN(image_size=64, filters=32, batch_size=4), 4, 64),
        "cyclegan_128px_f64_batch1 (Zhu et al.)": (CycleGAN(image_size=128, filters=64, batch_size=1), 1, 128),
        "vqgan_64px_f32_batch16 (notebook 08)": (
            VQGAN(image_size=64, downsample=8, filters=32, codes=256, embed_dim=32, disc_start=0, batch_size=16),
            16,
            64,
        ),
    }
    data = {}
    for name, (_, batch, size) in variants.items():
        n = batch * args.steps
        photos, paintings = tiny_photos(n, size, seed=0), tiny_paintings(n, size, seed=1)
        data[name] = ContentStyleData(photos, paintings) if name.startswith("cyclegan") else union(photos, paintings)

    def epoch(name) -> float:
        model, batch, _ = variants[name]
        t = time.perf_counter()
        model.fit(data[name].dataset(batch, seed=0), epochs=1, steps_per_epoch=args.steps, verbose=0, shuffle=False)
        return time.perf_counter() - t

    def cyclegan_floor(model, x, y):
        with tf.GradientTape(persistent=True) as tape:
            values, fake_y, fake_x = model.generator_losses(x, y)
            d_loss = lsgan_discriminator_loss(
                model.discriminator_y(y), model.discriminator_y(tf.stop_gradient(fake_y))
            ) + lsgan_discriminator_loss(model.discriminator_x(x), model.discriminator_x(tf.stop_gradient(fake_x)))
        return tape.gradient(values["g_loss"], model.generator_variables()), tape.gradient(
            d_loss, model.discriminator_variables()
        )

    def vqgan_floor(model, x):
        with tf.GradientTape(persistent=True) as tape:
            v = model.autoencoder_losses(x)
            loss = (
                v["nll"]
                + v["codebook_loss"]
                + v["commitment_loss"]
                + hinge_generator_loss(model.discriminator(v["x_rec"]))
            )
            d_loss = hinge_discriminator_loss(model.discriminator(x), model.discriminator(tf.stop_gradient(v["x_rec"])))
        return tape.gradient(loss, model.autoencoder_variables()), tape.gradient(
            d_loss, model.discriminator.trainable_variables
        )

    warmup = {name: round(epoch(name), 2) for name in variants}  # builds the models and their optimisers
    floors = {}
    for name, (model, batch, size) in variants.items():
        x = tf.random.uniform((batch, size, size, 3), -1, 1, seed=1)
        y = tf.random.uniform((batch, size, size, 3), -1, 1, seed=2)
        fn = tf.function(
            lambda x=x, y=y, m=model: cyclegan_floor(m, x, y) if m.kind == "cyclegan" else vqgan_floor(m, x)
        )
        floors[name] = lambda fn=fn: [tf.convert_to_tensor(g).numpy() for g in tf.nest.flatten(fn()) if g is not None]
        floors[name]()  # traced before the rounds

    def floor_round(name) -> float:  # the floor of one round's steps, timed beside it
        t = time.perf_counter()
        for _ in range(args.steps):
            floors[name]()
        return time.perf_counter() - t

    # each round times every variant's steps and then its floor for as many steps, so that a slow spell of this
    # shared machine (rounds differ up to 2×) lands on both sides of a round's ratio
    times: dict[str, list[float]] = {name: [] for name in variants}
    floor_times: dict[str, list[float]] = {name: [] for name in variants}
    for r in range(args.rounds):
        for name in variants:
            times[name].append(epoch(name))
            floor_times[name].append(floor_round(name))
        print(f"round {r + 1}: " + ", ".join(f"{k} {t[-1]:.2f} s" for k, t in times.items()), flush=True)

    results = {}
    for name, (model, batch, _) in variants.items():
        ratios = [t / f for t, f in zip(times[name], floor_times[name])]
        step = statistics.median(times[name]) / args.steps
        floor = statistics.median(floor_times[name]) / args.steps
        results[name] = {
            "images_per_s": round(batch / step, 2),
            "step_s": round(step, 4),
            "floor_s": round(floor, 4),
            "step_over_floor": round(statistics.median(ratios), 2),  # the median of the rounds' own ratios
            "round_step_over_floor": [round(q, 2) for q in ratios],
            "warmup_epoch_s": warmup[name],
            "round_s": [round(t, 3) for t in times[name]],
            "round_floor_s": [round(t, 3) for t in floor_times[name]],
            "parameters": model.count_params(),
        }
        print(
            f"{name:40s} {results[name]['images_per_s']:7.2f} images/s  {step:.3f} s/step  "
            f"{results[name]['step_over_floor']:.2f}× the floor"
        )

    # guided generation: seconds per iteration at 128 px with the Gram prompt (VGG19)
    from nst_lib.models.data import from_unit
    from nst_lib.models.guidance import GramPrompt, guide

    vq = variants["vqgan_64px_f32_batch16 (notebook 08)"][0]
    photo, painting = tiny_photos(1, 128, seed=3).images[0], tiny_paintings(1, 128, seed=4).images[0]
    prompt = GramPrompt(painting, weights="auto")
    import tempfile

    # each guide() call traces its own loss function and writes a run folder: the time per iteration is the
    # difference of a long and a short call over their difference in iterations, which cancels that per-call cost
    def guided(iterations: int, tmp: str):
        t = time.perf_counter()
        result = guide(vq, photo, prompt, iterations=iterations, snapshots=(), size=128, out=tmp, progress=False)
        return time.perf_counter() - t, result

    with tempfile.TemporaryDirectory() as tmp:
        guided(2, tmp)  # the first call's one-off costs (VGG19's weights, Keras' own set-up)
        short, _ = guided(10, tmp)
        long, r = guided(40, tmp)
        per_it = (long - short) / 30
        per_call = short - 10 * per_it
    decode_forward = median_time(lambda: from_unit(vq.decode_latent(vq.encode(photo[None]))), repeats=5, warmup=1)
    results["guidance_gram_128px"] = {
        "s_per_iteration": round(per_it, 4),
        "s_per_call_besides_iterations": round(per_call, 3),
        "iterations_timed": [10, 40],
        "decode_s": round(decode_forward, 4),
        "loss_first_last": [round(r.losses[0]["total"], 4), round(r.losses[-1]["total"], 4)],
    }
    print(f"guidance (Gram prompt, 128 px): {per_it:.3f} s/iteration")
    write(
        "cyclegan_vqgan_throughput",
        {"settings": {"steps_per_round": args.steps, "rounds": args.rounds}, "results": results},
    )


if __name__ == "__main__":
    main()
