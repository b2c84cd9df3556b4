"""Project settings: hooks and where the configuration comes from."""

from kedro.config import OmegaConfigLoader

from fruit_pipeline.hooks import SparkHooks

HOOKS = (SparkHooks(),)

CONFIG_LOADER_CLASS = OmegaConfigLoader
CONFIG_LOADER_ARGS = {
    "base_env": "base",
    "default_run_env": "local",
    "config_patterns": {
        "spark": ["spark*", "spark*/**"],
    },
}
