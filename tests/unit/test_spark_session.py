import os

from fruit_pipeline.config import config_loader
from fruit_pipeline.spark.session import environment, local_executor_environment
from tests.support.helpers import PROJECT_ROOT

SETTINGS = {
    "spark.master": "local[*]",
    "spark.driver.memory": "2g",
    "spark.executorEnv.OMP_NUM_THREADS": 1,
    # An environment unsets a base setting with null.
    "spark.executorEnv.UNSET_BY_AN_ENVIRONMENT": None,
}


def test_a_local_driver_takes_the_executors_environment_and_a_cluster_leaves_it_to_spark():
    assert local_executor_environment(SETTINGS) == {"OMP_NUM_THREADS": "1"}
    assert local_executor_environment({**SETTINGS, "spark.master": "yarn"}) == {}


def test_the_variables_last_while_the_jvm_starts_and_the_processs_own_win(monkeypatch):
    monkeypatch.setenv("KEPT", "own")
    monkeypatch.delenv("ADDED", raising=False)
    with environment({"KEPT": "given", "ADDED": "given"}):
        assert (os.environ["KEPT"], os.environ["ADDED"]) == ("own", "given")
    assert os.environ["KEPT"] == "own"
    assert "ADDED" not in os.environ


def test_the_local_jvm_runs_one_blas_thread_a_task(spark):
    settings = config_loader(PROJECT_ROOT)["spark"]
    assert settings["spark.executorEnv.OMP_NUM_THREADS"] == 1
    jvm_value = spark.sparkContext._jvm.java.lang.System.getenv("OMP_NUM_THREADS")
    assert jvm_value == os.environ.get("OMP_NUM_THREADS", "1")
