"""What `fruit-deploy package` stages under deploy_root, and where the bootstrap action puts it on a
node (under node_home): each name said here once. The bootstrap action (deploy/emr/bootstrap.sh)
names none of them: it reads them from the manifest staged beside them, which its first argument
names."""

MANIFEST = "staged.env"
BOOTSTRAP = "bootstrap.sh"
CONSTRAINTS = "constraints.txt"
# `kedro package`'s name for the archive of conf/ (without conf/local).
CONF_ARCHIVE = "conf-fruit_pipeline.tar.gz"
# `kedro run` wants a project folder: this file and conf/ make the primary node's.
PYPROJECT = "pyproject.toml"
WHEELHOUSE = "wheelhouse"
MODELS = "models"
# On each node: the project's virtual environment and Keras cache, and (primary node) the file
# the step sources for EMR's own pyspark.
VENV = "venv"
KERAS_HOME = "keras"
STEP_ENVIRONMENT = "spark_env.sh"


def manifest(wheel: str) -> str:
    """The manifest's `role=name` lines; the wheel keeps its own file name, which pip wants."""
    names = {
        "wheel": wheel,
        "constraints": CONSTRAINTS,
        "conf_archive": CONF_ARCHIVE,
        "pyproject": PYPROJECT,
        "wheelhouse": WHEELHOUSE,
        "models": MODELS,
        "venv": VENV,
        "keras_home": KERAS_HOME,
        "step_environment": STEP_ENVIRONMENT,
    }
    return "".join(f"{role}={name}\n" for role, name in names.items())
