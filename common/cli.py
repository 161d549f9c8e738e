"""The suite's one command line: ``lightning fit --config experiments/<method>.yaml``.

A :class:`LightningCLI` in subclass mode: ``model`` and ``data`` take any LightningModule /
LightningDataModule by ``class_path``, so every method in the suite is reachable without a
registry. On top of Lightning's own arguments the CLI adds a ``run`` group that decides where a
run writes (its own directory under ``runs/``), which logger it uses (W&B offline by default, CSV
when W&B is switched off) and how often it checkpoints.

Resuming: ``--ckpt_path last`` picks ``checkpoints/last.ckpt`` of the newest run directory of the
same run name. Checkpoints are loaded with ``weights_only=True`` by default. The config given wins
over the hyper-parameters saved in the checkpoint (Lightning would silently use the checkpoint's);
the arguments that differ are logged.
"""

import logging
import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Optional

import torch
from lightning.pytorch import LightningDataModule, LightningModule
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI, SaveConfigCallback

log = logging.getLogger(__name__)


@dataclass
class RunOptions:
    """Where and how a run writes.

    Args:
        root: folder holding every run directory.
        name: run name; the run directory is ``<root>/<name>/version_<k>``. Defaults to the config
            file's stem (or the model class name).
        logger: ``wandb`` (offline unless ``wandb_mode='online'`` or ``WANDB_MODE`` says otherwise),
            ``csv`` or ``none``. Ignored when the trainer config sets its own ``logger``.
        wandb_mode: W&B mode when ``logger='wandb'``; ``WANDB_MODE`` in the environment wins.
        project: W&B project name.
        checkpoint_every_n_steps: save a checkpoint every N optimiser steps (plus ``last.ckpt``);
            0 saves only at the end of training.
    """

    root: str = "runs"
    name: Optional[str] = None
    logger: Literal["wandb", "csv", "none"] = "wandb"
    wandb_mode: Literal["offline", "online"] = "offline"
    project: str = "priorlab"
    checkpoint_every_n_steps: int = 1000


_RUN_DIR_ENV = "PRIORLAB_RUN_DIR"
_VERSION = re.compile(r"^version_(\d+)$")


def _versions(base: Path) -> list[tuple[int, Path]]:
    if not base.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in base.iterdir() if (m := _VERSION.match(p.name)) and p.is_dir()]
    return sorted(found)


def resolve_run_dir(root: str, name: str, resume_last: bool) -> Path:
    """The run directory: the newest ``version_k`` holding ``checkpoints/last.ckpt`` when resuming,
    else a new ``version_{k+1}``."""
    base = Path(root) / name
    versions = _versions(base)
    if resume_last:
        for _, path in reversed(versions):
            if (path / "checkpoints" / "last.ckpt").is_file():
                return path
        raise FileNotFoundError(
            f"--ckpt_path last: no run of '{name}' under {base} has checkpoints/last.ckpt. "
            "Pass an explicit checkpoint file with --ckpt_path PATH, or --run.name of the run to resume."
        )
    next_version = versions[-1][0] + 1 if versions else 0
    return base / f"version_{next_version}"


class RunCheckpoint(ModelCheckpoint):
    """``ModelCheckpoint`` that also saves (step and ``last``) when training ends between intervals,
    so ``--ckpt_path last`` always resumes from where the run stopped."""

    def on_train_end(self, trainer, pl_module) -> None:
        if trainer.fast_dev_run or trainer.sanity_checking or self._last_global_step_saved == trainer.global_step:
            return
        candidates = self._monitor_candidates(trainer)
        self._save_topk_checkpoint(trainer, candidates)
        self._save_last_checkpoint(trainer, candidates)


class SuiteSaveConfig(SaveConfigCallback):
    """Writes ``config.yaml`` (``config_<stage>.yaml`` for test/validate/predict) into the run directory."""

    def setup(self, trainer, pl_module, stage: str) -> None:
        if self.already_saved:
            return
        run_dir = Path(trainer.default_root_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        # fit writes config.yaml; test/validate/predict on the same run folder keep it and add their own
        name = self.config_filename if stage == "fit" else f"config_{stage}.yaml"
        config_path = run_dir / name
        if trainer.is_global_zero:
            with warnings.catch_warnings():  # skip_none=False keeps explicit nulls (e.g. pretrained: null); as Lightning's own callback
                warnings.simplefilter("ignore")
                self.parser.save(self.config, str(config_path), skip_none=False, overwrite=True, multifile=False)
        self.already_saved = True
        self.already_saved = trainer.strategy.broadcast(self.already_saved)


class SuiteCLI(LightningCLI):
    """LightningCLI over every method of the suite (subclass mode, ``run`` options, run folders)."""

    def __init__(self, args: Any = None, run: bool = True, **kwargs: Any) -> None:
        kwargs.setdefault("save_config_callback", SuiteSaveConfig)
        kwargs.setdefault("parser_kwargs", {"parser_mode": "omegaconf"} if _has_omegaconf() else None)
        super().__init__(
            LightningModule,
            LightningDataModule,
            subclass_mode_model=True,
            subclass_mode_data=True,
            args=args,
            run=run,
            **kwargs,
        )

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_class_arguments(RunOptions, "run")

    def _prepare_subcommand_parser(self, klass: type, subcommand: str, **kwargs: Any) -> LightningArgumentParser:
        parser = super()._prepare_subcommand_parser(klass, subcommand, **kwargs)
        if "weights_only" in self._subcommand_method_arguments.get(subcommand, ()):
            # Checkpoints hold tensors and plain hyper-parameters only: load them safely.
            parser.set_defaults(weights_only=True)
        return parser

    # -- resuming: the config's model arguments win over the checkpoint's ---------------------
    def _parse_ckpt_path(self) -> None:
        """Keep the parsed config when ``--ckpt_path`` is a file (differences are logged by
        :meth:`_report_changed_hparams`).

        Lightning replaces the model's arguments by the hyper-parameters saved in the checkpoint when
        ``--ckpt_path`` names a file, so an argument changed for the resumed part of a run (a new
        ``sample_eta``, a lower ``lr``) is silently dropped; with ``--ckpt_path last`` (resolved
        later, in :meth:`before_instantiate_classes`) it is kept. Here both behave alike: the config
        given is the configuration, as everywhere else in the suite.
        """

    @staticmethod
    def _report_changed_hparams(model_cfg: Any, ckpt_path: str) -> list[str]:
        """Log (and return) the model arguments whose config value differs from the checkpoint's."""
        # mmap: only the hyper-parameters are read here; Lightning loads the tensors when it restores
        hparams = torch.load(ckpt_path, weights_only=True, map_location="cpu", mmap=True).get("hyper_parameters", {})
        init = model_cfg.get("init_args") if hasattr(model_cfg, "get") else None
        if not hparams or init is None:
            return []
        plain = (bool, int, float, str, type(None), list, tuple)
        changed = []
        for key, saved in hparams.items():
            if key.startswith("_") or key not in init:
                continue
            value = init[key]
            if isinstance(saved, plain) and isinstance(value, plain) and saved != value:
                changed.append(f"{key}: checkpoint {saved!r} -> config {value!r}")
        if changed:
            log.warning("resuming from %s with model arguments that differ from the checkpoint's; the config's "
                        "values are used: %s", ckpt_path, "; ".join(changed))
        return changed

    # -- run directory, logger, checkpoints ------------------------------------------------------
    def before_instantiate_classes(self) -> None:
        cfg = self.config[self.subcommand] if self.subcommand else self.config  # run=False: no subcommand
        opts = RunOptions(**{k: v for k, v in vars(cfg.run).items() if not k.startswith("__")})
        name = opts.name or _default_run_name(cfg)
        ckpt = cfg.get("ckpt_path")
        resume_last = ckpt == "last"
        child_rank = os.environ.get("LOCAL_RANK", "0") != "0" or os.environ.get("NODE_RANK", "0") != "0"
        if child_rank and os.environ.get(_RUN_DIR_ENV):
            # DDP ranks launched by rank 0 (Lightning's subprocess launcher) share its run folder.
            run_dir = Path(os.environ[_RUN_DIR_ENV])
        else:
            run_dir = resolve_run_dir(opts.root, name, resume_last)
            os.environ[_RUN_DIR_ENV] = str(run_dir)
        if resume_last:
            cfg.ckpt_path = str(run_dir / "checkpoints" / "last.ckpt")
        elif ckpt is not None and not Path(ckpt).is_file() and ckpt not in ("best", "hpc", "registry"):
            raise FileNotFoundError(
                f"--ckpt_path {ckpt}: no such checkpoint file. Give a path to a .ckpt file, or 'last' "
                f"to resume the newest run of '{name}' under {opts.root}/."
            )
        if cfg.get("ckpt_path") and Path(cfg.ckpt_path).is_file() and not child_rank:
            self._report_changed_hparams(cfg.get("model"), cfg.ckpt_path)
        if cfg.trainer.get("default_root_dir") in (None, os.getcwd(), "."):
            cfg.trainer.default_root_dir = str(run_dir)
        self._run_options = opts
        self._run_dir = Path(cfg.trainer.default_root_dir)

    def instantiate_trainer(self, **kwargs: Any):
        cfg = self.config_init[self.subcommand] if self.subcommand else self.config_init
        opts: RunOptions = getattr(self, "_run_options", RunOptions())
        run_dir: Path = getattr(self, "_run_dir", Path(opts.root) / "unnamed")
        trainer_cfg = cfg.get("trainer", {})
        if trainer_cfg.get("logger") in (None, True):
            kwargs["logger"] = make_logger(opts, run_dir)
        callbacks = list(trainer_cfg.get("callbacks") or [])
        wants_checkpoints = trainer_cfg.get("enable_checkpointing", True) is not False
        if wants_checkpoints and not any(isinstance(c, ModelCheckpoint) for c in callbacks):
            cb = RunCheckpoint(
                dirpath=run_dir / "checkpoints",
                filename="step{step:07d}",
                auto_insert_metric_name=False,
                every_n_train_steps=opts.checkpoint_every_n_steps or None,
                save_top_k=-1 if opts.checkpoint_every_n_steps else 1,
                save_last=True,
                enable_version_counter=False,  # resuming overwrites last.ckpt instead of writing last-v1.ckpt
            )
            trainer_cfg["callbacks"] = callbacks + [cb]
        return super().instantiate_trainer(**kwargs)

    def after_fit(self) -> None:
        _print_run_summary(self)

    def after_test(self) -> None:
        _print_run_summary(self)

    def after_validate(self) -> None:
        _print_run_summary(self)


def _print_run_summary(cli: "SuiteCLI") -> None:
    trainer = cli.trainer
    if not trainer.is_global_zero:
        return
    root = Path(trainer.default_root_dir)
    lines = [f"\nRun folder: {root}"]
    for sub in ("config.yaml", "checkpoints", "media", "test_metrics.json", "metrics.json"):
        path = root / sub
        if path.is_dir():
            names = sorted(p.name for p in path.iterdir())
            shown = ", ".join(names[-6:]) + (f" (+{len(names) - 6} more)" if len(names) > 6 else "")
            lines.append(f"  {sub}/: {shown}")
        elif path.is_file():
            lines.append(f"  {sub}")
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1}
    if metrics:
        lines.append("  last metrics: " + ", ".join(f"{k}={v:.4g}" for k, v in sorted(metrics.items())))
    print("\n".join(lines))


def _has_omegaconf() -> bool:
    try:
        import omegaconf  # noqa: F401
    except ImportError:
        return False
    return True


def _default_run_name(cfg: Any) -> str:
    configs = cfg.get("config") or []
    # The first config file is the experiment; later ones are overrides layered on top of it.
    for path in configs:
        rel = getattr(path, "relative", None) or str(path)
        stem = Path(rel).stem
        parent = Path(rel).parent.name
        return f"{parent}-{stem}" if parent and parent != "experiments" else stem
    model = cfg.get("model")
    class_path = getattr(model, "class_path", None) if model is not None else None
    return (class_path or "run").rsplit(".", 1)[-1].lower()


def make_logger(opts: RunOptions, run_dir: Path):
    """W&B (offline unless asked), CSV, or nothing; each writes inside the run directory."""
    if opts.logger == "none":
        return False
    run_dir.mkdir(parents=True, exist_ok=True)
    if opts.logger == "wandb":
        try:
            from lightning.pytorch.loggers import WandbLogger
        except ImportError:  # pragma: no cover - wandb is a dependency
            opts.logger = "csv"
        else:
            mode = os.environ.get("WANDB_MODE", opts.wandb_mode)
            return WandbLogger(
                project=opts.project, name=f"{run_dir.parent.name}/{run_dir.name}", save_dir=str(run_dir),
                offline=mode in ("offline", "dryrun"), mode=mode,
            )
    from lightning.pytorch.loggers import CSVLogger

    return CSVLogger(save_dir=str(run_dir), name="", version="csv")


def main(args: Any = None) -> None:
    """Console entry point ``lightning`` (and ``python -m common.cli``)."""
    torch.set_float32_matmul_precision("high")
    SuiteCLI(args=args)


if __name__ == "__main__":
    main()
