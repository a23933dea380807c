"""The ``nst`` console script. Flags are generated from ``StyleConfig``'s fields, so their defaults and help
come from the one dataclass and never drift.

    nst stylize CONTENT STYLE [STYLE ...] [--preset NAME] [--out DIR] [--<field> VALUE ...]
    nst resume RUN_DIR [--steps N]
    nst presets | nst layers ARCH | nst patterns OUT_DIR
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import typing
import warnings

from ..config import PRESETS, StyleConfig
from ..errors import NSTError
from .patterns import write_patterns

EXIT_INTERRUPTED = 130


def _none_or(parse):
    def parser(text: str):
        return None if text.lower() == "none" else parse(text)

    parser.__name__ = getattr(parse, "__name__", "value")
    return parser


def add_config_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per StyleConfig field; unset flags stay absent so a preset's values are kept."""
    hints = typing.get_type_hints(StyleConfig)
    group = parser.add_argument_group("StyleConfig fields (defaults from nst_lib.StyleConfig)")
    for f in dataclasses.fields(StyleConfig):
        hint = hints[f.name]
        args = typing.get_args(hint)
        optional = type(None) in args
        base = next((a for a in args if a is not type(None)), hint) if args else hint
        flag = "--" + f.name.replace("_", "-")
        text = f"{f.metadata['help']} (default: {f.default})"
        kw = {"dest": f.name, "default": argparse.SUPPRESS, "help": text.replace("%", "%%")}
        if base is bool:
            group.add_argument(flag, action=argparse.BooleanOptionalAction, **kw)
            continue
        if typing.get_origin(base) is tuple:
            item = typing.get_args(base)[0]
            group.add_argument(flag, nargs="+", type=item, metavar=item.__name__.upper(), **kw)
            continue
        parse = _none_or(base) if optional else base
        if f.metadata.get("choices"):
            kw["choices"] = list(f.metadata["choices"]) + (["none"] if optional else [])
            parse = _none_or(str) if optional else str
        group.add_argument(flag, type=parse, metavar=f.name.upper(), **kw)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nst", description="NST Workbench: neural style transfer in Keras 3")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("stylize", help="paint a content image in the style of one or more style images")
    p.add_argument("content", help="content image (path)")
    p.add_argument("style", nargs="+", help="style image(s); several are blended (--style-blend-weights)")
    p.add_argument("--preset", choices=list(PRESETS), default="default", help="start from a paper's preset")
    p.add_argument("--out", default="results", help="folder that receives the run folder (default: results)")
    p.add_argument("--name", default=None, help="run folder name (default: CONTENT_x_STYLE)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_config_flags(p)

    r = sub.add_parser("resume", help="continue an interrupted run from its folder")
    r.add_argument("run_dir")
    r.add_argument("--steps", type=int, default=argparse.SUPPRESS, help="raise the final level's step count")
    r.add_argument("--quiet", action="store_true")

    sub.add_parser("presets", help="list presets and where their values come from")
    la = sub.add_parser("layers", help="list an architecture's layer names and presets")
    la.add_argument("arch", choices=["vgg16", "vgg19", "resnet50"])
    pa = sub.add_parser("patterns", help="write the honeycomb and mandala style patterns (seed 001)")
    pa.add_argument("out_dir")
    pa.add_argument("--size", type=int, default=512)
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

    overrides = {"steps": args.steps} if hasattr(args, "steps") else {}
    return _report(resume(args.run_dir, progress=not args.quiet, **overrides))


def _report(result) -> int:
    steps = result.history[-1]["step"] if result.history else 0
    if result.status in ("interrupted", "stopped"):
        print(f"nst: {result.status} after {steps} steps; resume with: nst resume {result.run_dir}", file=sys.stderr)
        return EXIT_INTERRUPTED
    print(f"{result.run_dir}/output.png  ({steps} steps, {result.timings['total']:.1f} s)")
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
    for path in write_patterns(args.out_dir, args.size):
        print(path)
    return 0


def _one_line_warnings(message, category, filename, lineno, file=None, line=None):
    print(f"nst: warning: {message}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    warnings.showwarning = _one_line_warnings
    commands = {
        "stylize": _cmd_stylize,
        "resume": _cmd_resume,
        "presets": _cmd_presets,
        "layers": _cmd_layers,
        "patterns": _cmd_patterns,
    }
    try:
        return commands[args.command](args)
    except NSTError as exc:
        print(f"nst: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("nst: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
