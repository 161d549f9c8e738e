"""A run's LightningModule built from experiment YAMLs outside ``lightning fit`` (benchmarks, tests, inference).

jsonargparse parses and instantiates the ``model:`` section exactly as the CLI does, so a benchmark or a test
measures the object a user's run would build. (``SuiteCLI(run=False)`` cannot be used for this: its trainer
instantiation needs a subcommand.)

    model = build_model(["experiments/shapeworld/dreamfields.yaml"], ["--model.init_args.lr", "1e-3"])
    model = model_from_section(yaml.safe_load(text)["model"])
"""

from typing import Any, Mapping, Optional, Sequence

from jsonargparse import ArgumentParser, Namespace
from lightning.pytorch import LightningModule

__all__ = ["build_model", "instantiate", "model_from_section", "model_parser"]

# The CLI's other top-level sections: accepted (so that a whole experiment YAML parses) and ignored.
_OTHER_SECTIONS = ("trainer", "data", "run", "seed_everything", "ckpt_path", "optimizer", "lr_scheduler")


def model_parser() -> ArgumentParser:
    """A parser of ``--config`` files and ``--model.*`` arguments; other sections are read and ignored."""
    parser = ArgumentParser(exit_on_error=False)
    parser.add_argument("--config", action="config")
    parser.add_subclass_arguments(LightningModule, "model", required=True)
    for key in _OTHER_SECTIONS:
        parser.add_argument(f"--{key}", type=Optional[Any], default=None)
    return parser


def instantiate(parser: ArgumentParser, cfg: Namespace) -> Namespace:
    """``cfg`` with its classes instantiated (jsonargparse ≥ 4.49 calls this ``instantiate``; older releases
    ``instantiate_classes``, deprecated since)."""
    method = getattr(parser, "instantiate", None) or parser.instantiate_classes
    return method(cfg)


def build_model(configs: Sequence[str], args: Sequence[str] = ()) -> LightningModule:
    """The ``model`` of layered experiment YAMLs (later files override earlier ones) and CLI-style ``args``."""
    parser = model_parser()
    cfg = parser.parse_args([a for c in configs for a in ("--config", str(c))] + list(args))
    return instantiate(parser, cfg).model


def model_from_section(model_cfg: Mapping[str, Any]) -> LightningModule:
    """The model of one ``model:`` section (``{"class_path": ..., "init_args": {...}}``), e.g. after editing it."""
    parser = model_parser()
    return instantiate(parser, parser.parse_object({"model": dict(model_cfg)})).model
