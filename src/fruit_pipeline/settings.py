"""Project settings: hooks and where the configuration comes from."""

import os

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
    # `${env:NAME, default}` in any configuration file, e.g. the bucket of conf/emr/globals.yml.
    "custom_resolvers": {"env": lambda name, default=None: os.environ.get(name, default)},
}
