"""Weights & Biases logging, opt-in per job (`wandb: {enabled: true, project, mode}`), in one place.

Jobs call `Tracker.log`, `log_table`, `log_image` and `summary` whether or not tracking is on; with
`enabled: false` these are no-ops and wandb is never imported. `mode` goes to `wandb.init` only when the
config sets it, so `WANDB_MODE=offline` in the environment (tests, CI, machines without a network) decides
otherwise. Offline runs are written under `<base>/logs/wandb/` and can be synced later with `wandb sync`.

When a wandb sweep agent starts `run_job.py` it sets `WANDB_SWEEP_ID`; the job's `wandb.init` then joins
the sweep run, and the agent's `--key=value` arguments arrive as config overrides (see attexp.cli).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from attexp.config.schema import WandbConfig

log = logging.getLogger(__name__)


class Tracker:
    def __init__(self, cfg: WandbConfig, *, job: str, name: str, config: dict, base_dir: Path) -> None:
        self.run = None
        if not cfg.enabled:
            return
        import wandb

        folder = Path(base_dir) / "logs"
        folder.mkdir(parents=True, exist_ok=True)
        kwargs: dict[str, Any] = dict(
            project=cfg.project,
            entity=cfg.entity,
            group=cfg.group,
            tags=cfg.tags or None,
            name=name,
            job_type=job,
            config=config,
            dir=str(folder),
            reinit="finish_previous",
        )
        if cfg.mode is not None:
            kwargs["mode"] = cfg.mode
        self.run = wandb.init(**kwargs)
        log.info("wandb run %s (%s mode) in %s", self.run.id, self.run.settings.mode, folder)

    @property
    def enabled(self) -> bool:
        return self.run is not None

    def log(self, metrics: dict[str, Any], step: int | None = None) -> None:
        if self.run is not None:
            self.run.log(metrics, step=step)

    def log_table(self, key: str, columns: list[str], rows: list[list[Any]]) -> None:
        if self.run is not None:
            import wandb

            self.run.log({key: wandb.Table(columns=columns, data=rows)})

    def log_image(self, key: str, path: Path) -> None:
        if self.run is not None:
            import wandb

            self.run.log({key: wandb.Image(str(path))})

    def summary(self, values: dict[str, Any]) -> None:
        if self.run is not None:
            self.run.summary.update(values)

    def finish(self, exit_code: int = 0) -> None:
        if self.run is not None:
            self.run.finish(exit_code=exit_code)
            self.run = None
