"""Project settings: hooks and where the configuration comes from."""

import os
import warnings

from kedro.config import OmegaConfigLoader

from fruit_pipeline.hooks import SparkHooks

# Kedro 1.7 registers its own resolvers through an omegaconf call that 2.4 deprecates: the
# warning says nothing a user of this project can act on.
warnings.filterwarnings("ignore", message="register_new_resolver", category=UserWarning)

HOOKS = (SparkHooks(),)

CONFIG_LOADER_CLASS = OmegaConfigLoader
CONFIG_LOADER_ARGS = {
    "base_env": "base",
    "default_run_env": "local",
    "config_patterns": {
        "spark": ["spark*", "spark*/**"],
        "deploy": ["deploy*"],
        "facts": ["fruit_facts*"],
        "sample_images": ["sample_images*"],
    },
    # An environment (conf/emr) states only the keys that differ from conf/base.
    "merge_strategy": {"parameters": "soft", "spark": "soft"},
    # `${env:NAME, default}` in any configuration file, e.g. the bucket of conf/emr/globals.yml.
    "custom_resolvers": {"env": lambda name, default=None: os.environ.get(name, default)},
}
