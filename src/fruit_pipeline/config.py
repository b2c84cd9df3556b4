"""Configuration outside a Kedro run, read exactly as a run reads it (settings.py's loader)."""

from pathlib import Path

from kedro.config import AbstractConfigLoader

from fruit_pipeline import settings


def config_loader(project: Path, env: str | None = None) -> AbstractConfigLoader:
    """The project's configuration loader for an environment (None: the default run env)."""
    return settings.CONFIG_LOADER_CLASS(
        conf_source=str(project / "conf"), env=env, **settings.CONFIG_LOADER_ARGS
    )
