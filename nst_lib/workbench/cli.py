"""The ``nst`` console script. Flags are generated from ``StyleConfig``'s fields, so their defaults and help
come from the one dataclass and never drift.

    nst stylize CONTENT STYLE [STYLE ...] [--preset NAME] [--out DIR] [--<field> VALUE ...]
    nst resume RUN_DIR [--steps N]
    nst sweep SPEC [--preset NAME] [--executor ray [--address ADDR] [--workers N]] [--<field> VALUE ...]
    nst presets | nst layers ARCH | nst patterns OUT_DIR
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import sys
import typing
import warnings
from collections.abc import Sequence
from pathlib import Path

from ..config import ARCHS, CELL_RETRIES, EXECUTORS, PRESETS, RESUME_OVERRIDES, RUNS_DIR, StyleConfig
from ..errors import ConfigError, NSTError
from .patterns import write_patterns

EXIT_INTERRUPTED = 130


def _none_or(parse):
    def parser(text: str):
        return None if text.lower() == "none" else parse(text)

    parser.__name__ = getattr(parse, "__name__", "value")
    return parser


def _one_of(choices: list[str], optional: bool):
    def parser(text: str):
        if text not in choices:
            raise argparse.ArgumentTypeError(f"invalid choice {text!r} (choose from {', '.join(choices)})")
        return None if optional and text == "none" else text

    parser.__name__ = "choice"
    return parser


class _ListOrNone(argparse.Action):
    """A list flag whose single value ``none`` means None."""

    def __call__(self, parser, namespace, values, option_string=None):
        if None in values:
            if len(values) > 1:
                parser.error(f"{option_string}: 'none' cannot be combined with other values")
            values = None
        setattr(namespace, self.dest, values)


def add_config_flags(
    parser: argparse.ArgumentParser, preset: str | None = None, only: Sequence[str] | None = None
) -> None:
    """One flag per StyleConfig field (per field in ``only``, whose defaults are the run's: ``nst resume``); unset
    flags stay absent so a preset's values are kept. The help shows ``preset``'s values where it is named
    (``nst stylize --preset gatys2016 --help``), StyleConfig's otherwise."""
    hints = typing.get_type_hints(StyleConfig)
    values = StyleConfig.preset(preset) if preset else None
    title = f"preset {preset}'s values" if preset else "defaults from nst_lib.StyleConfig"
    if preset and parser.prog.endswith(" sweep"):
        title += "; a spec's base overrides them"
    if only is not None:
        title = "what a resume may change; default: as the run was started"
    group = parser.add_argument_group(f"StyleConfig fields ({title})")
    for f in dataclasses.fields(StyleConfig):
        if only is not None and f.name not in only:
            continue
        hint = hints[f.name]
        args = typing.get_args(hint)
        optional = type(None) in args
        base = next((a for a in args if a is not type(None)), hint) if args else hint
        flag = "--" + f.name.replace("_", "-")
        value = f.default if values is None else getattr(values, f.name)
        text = f"{f.metadata['help']} (default: {value})" if only is None else f.metadata["help"]
        kw = {"dest": f.name, "default": argparse.SUPPRESS, "help": text.replace("%", "%%")}
        if base is bool:
            group.add_argument(flag, action=argparse.BooleanOptionalAction, **kw)
            continue
        if typing.get_origin(base) is tuple:
            item = typing.get_args(base)[0]
            kw["type"] = item
            if optional:  # "--style-layers none": the field's None (the preset's layers), as its help says
                kw.update(type=_none_or(item), action=_ListOrNone)
            group.add_argument(flag, nargs="+", metavar=item.__name__.upper(), **kw)
            continue
        parse = _none_or(base) if optional else base
        if f.metadata.get("choices"):  # checked by the parse itself: argparse would check the converted None
            choices = list(f.metadata["choices"]) + (["none"] if optional else [])
            parse = _one_of(choices, optional)
            kw["help"] += f"; one of {', '.join(choices)}"
        group.add_argument(flag, type=parse, metavar=f.name.upper(), **kw)


def _default(function, name: str):
    """A parameter's default as the API declares it: the command's defaults cannot drift from the library's."""
    return inspect.signature(function).parameters[name].default


def _preset_named(argv: Sequence[str]) -> str | None:
    """The preset ``argv`` names with ``--preset NAME`` or ``--preset=NAME`` (the last, as the parser takes it), if
    it is one (the help shows its values); anything else is left to the parser to refuse."""
    for i in reversed(range(len(argv))):
        arg = argv[i]
        if arg.startswith("--preset="):
            return arg.partition("=")[2] if arg.partition("=")[2] in PRESETS else None
        if arg == "--preset" and i + 1 < len(argv):
            return argv[i + 1] if argv[i + 1] in PRESETS else None
    return None


def build_parser(preset: str | None = None) -> argparse.ArgumentParser:
    """The command's parser; ``preset`` (named on the command line) sets the values its help shows."""
    parser = argparse.ArgumentParser(prog="nst", description="NST Workbench: neural style transfer in Keras 3")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("stylize", help="paint a content image in the style of one or more style images")
    p.add_argument("content", help="content image (path)")
    p.add_argument("style", nargs="+", help="style image(s); several are blended (--style-blend-weights)")
    p.add_argument("--preset", choices=list(PRESETS), default="default", help="start from a paper's preset")
    p.add_argument("--out", default=RUNS_DIR, help=f"folder that receives the run folder (default: {RUNS_DIR})")
    p.add_argument("--name", default=None, help="run folder name (default: CONTENT_x_STYLE)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_config_flags(p, preset)

    r = sub.add_parser(
        "resume",
        help="continue an interrupted run from its folder",
        description="Continue a run from its folder's last checkpoint, with the config it was started with. --steps "
        "sets the steps a scale from the checkpoint's scale on (a finished run's final scale continues to it); "
        "another size, loss or schedule is a new run (nst stylize).",
    )
    r.add_argument("run_dir")
    r.add_argument("--quiet", action="store_true", help="no progress bar")
    add_config_flags(r, only=RESUME_OVERRIDES)

    sw = sub.add_parser(
        "sweep",
        help="run a sweep spec (JSON or TOML): every content × style × varied value, each cell a run folder",
        description="Run the grid a spec file describes (fields: contents, styles, base or preset, vary, out; "
        "see nst_lib.workbench.sweeps.load_spec). Finished cells are skipped and interrupted ones resumed, so "
        "the same command continues a sweep. Prints the table at the end and writes sweep.csv beside the cells.",
    )
    sw.add_argument("spec", help="the sweep spec, a .json or .toml file")
    sw.add_argument(
        "--preset", choices=list(PRESETS), default=None, help="start from a paper's preset (default: the spec's)"
    )
    sw.add_argument("--out", default=None, help="the sweep's folder (default: the spec's out)")
    sw.add_argument("--executor", choices=EXECUTORS, default=EXECUTORS[0], help="run cells here or as Ray tasks")
    sw.add_argument(
        "--address", default=None, help="Ray cluster to join: auto or ray://HOST:10001 (default: a local Ray)"
    )
    sw.add_argument("--workers", type=int, default=None, help="CPUs of the local Ray started when no address is given")
    sw.add_argument(
        "--resources",
        nargs="+",
        metavar="NAME=AMOUNT",
        default=None,
        help="Ray resources per cell, e.g. CPU=2 or GPU=0.5 (default: one GPU where the cluster has GPUs, else 1 CPU)",
    )
    sw.add_argument(
        "--retries",
        type=int,
        default=CELL_RETRIES,
        help=f"re-runs of a cell whose worker died (default: {CELL_RETRIES})",
    )
    sw.add_argument("--quiet", action="store_true", help="no progress bar")
    add_config_flags(sw, preset)

    sub.add_parser("presets", help="list presets and where their values come from")
    la = sub.add_parser("layers", help="list an architecture's layer names and presets")
    la.add_argument("arch", choices=ARCHS)
    pa = sub.add_parser("patterns", help="write the honeycomb and mandala style patterns (seed 001)")
    pa.add_argument("out_dir")
    size = _default(write_patterns, "size")
    pa.add_argument("--size", type=int, default=size, help=f"side in pixels (default: {size})")
    pa.add_argument("--force", action="store_true", help="replace files of the same names that hold other images")
    return parser


def _config_from_args(args: argparse.Namespace) -> StyleConfig:
    fields = {f.name for f in dataclasses.fields(StyleConfig)}
    overrides = {k: v for k, v in vars(args).items() if k in fields}
    return StyleConfig.preset(args.preset, **overrides)


def _cmd_stylize(args) -> int:
    from ..transfer import stylize  # the engine loads Keras and TensorFlow: only when a command needs it

    config = _config_from_args(args)
    result = stylize(args.content, args.style, config, out=args.out, name=args.name, progress=not args.quiet)
    return _report(result)


def _cmd_resume(args) -> int:
    from ..transfer import resume

    overrides = {k: getattr(args, k) for k in RESUME_OVERRIDES if hasattr(args, k)}
    return _report(resume(args.run_dir, progress=not args.quiet, **overrides))


def _cmd_sweep(args) -> int:
    from .sweeps import load_spec, sweep

    fields = {f.name for f in dataclasses.fields(StyleConfig)}
    spec = load_spec(args.spec, args.preset, {k: v for k, v in vars(args).items() if k in fields})
    if args.out is not None:
        spec["out"] = args.out
    result = sweep(
        **spec,
        progress=not args.quiet,
        executor=args.executor,
        address=args.address,
        resources=_resources(args.resources),
        workers=args.workers,
        retries=args.retries,
    )
    print(result.summary())
    print(f"{Path(spec['out']) / 'sweep.csv'}")
    if result.failed:
        names = ", ".join(c.run_dir.name for c in result.failed)
        print(f"nst: {len(result.failed)} cell(s) failed: {names}; the same command resumes them", file=sys.stderr)
    unfinished = [c for c in result if c.status == "pending" or c.status.endswith(("interrupted", "stopped"))]
    if unfinished:  # an interrupted sweep says so by its exit status, also where a cell failed before
        print(f"nst: {len(unfinished)} cell(s) unfinished; the same command resumes the sweep", file=sys.stderr)
        return EXIT_INTERRUPTED
    return 1 if result.failed else 0


def _resources(pairs: list[str] | None) -> dict[str, float] | None:
    if pairs is None:
        return None
    out = {}
    for pair in pairs:
        name, _, amount = pair.partition("=")
        try:
            out[name] = float(amount)
        except ValueError:
            raise ConfigError(f"--resources: {pair!r} is not NAME=AMOUNT") from None
        if not name:
            raise ConfigError(f"--resources: {pair!r} is not NAME=AMOUNT")
    return out


def _report(result) -> int:
    steps = len(result.history)  # one row per step, over every scale (a row's "step" counts within its scale)
    if result.status in ("interrupted", "stopped"):
        print(f"nst: {result.status} after {steps} steps; resume with: nst resume {result.run_dir}", file=sys.stderr)
        return EXIT_INTERRUPTED
    scales = len({row["level"] for row in result.history})
    over = f" over {scales} scales" if scales > 1 else ""
    print(f"{result.run_dir}/output.png  ({steps} steps{over}, {result.timings['total']:.1f} s)")
    return 0


def _cmd_presets(args) -> int:
    for name, preset in PRESETS.items():
        print(f"{name}:")
        for key, value in preset["values"].items():
            print(f"  {key} = {value!r}")
        for key, source in preset["sources"].items():
            print(f"  [{key}] {source}")
    return 0


def _cmd_layers(args) -> int:
    from ..features import LAYER_PRESETS, build_base, valid_layer_names

    print("layers:", " ".join(valid_layer_names(build_base(args.arch, None))))
    print("content preset:", " ".join(LAYER_PRESETS[args.arch]["content"]))
    print("style preset:", " ".join(LAYER_PRESETS[args.arch]["style"]))
    return 0


def _cmd_patterns(args) -> int:
    for path in write_patterns(args.out_dir, args.size, force=args.force):
        print(path)
    return 0


def _one_line_warnings(message, category, filename, lineno, file=None, line=None):
    print(f"nst: warning: {message}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser(_preset_named(argv)).parse_args(argv)
    warnings.showwarning = _one_line_warnings
    commands = {
        "stylize": _cmd_stylize,
        "resume": _cmd_resume,
        "sweep": _cmd_sweep,
        "presets": _cmd_presets,
        "layers": _cmd_layers,
        "patterns": _cmd_patterns,
    }
    try:
        return commands[args.command](args)
    except NSTError as exc:
        print(f"nst: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except OSError as exc:  # the disk's answer (full, read-only, no permission): one line naming the file
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"nst: error: {where}{exc.strerror or exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("nst: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
