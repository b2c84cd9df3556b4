"""On the default engine the Spark Python workers run ONNX Runtime and never import TensorFlow.

Checked in a process of its own: the test session's workers also ran the Keras engine.
"""

import json
import subprocess
import sys
import textwrap

from tests.support.helpers import new_project

# A featurize run, then a look at the modules of the Python workers it used (Spark reuses them).
WORKER_MODULES = textwrap.dedent(
    """
    import json, sys
    from kedro.framework.session import KedroSession
    from kedro.framework.startup import bootstrap_project
    from pyspark.sql import SparkSession

    bootstrap_project(sys.argv[1])
    with KedroSession.create(
        project_path=sys.argv[1], runtime_params={"images_root": sys.argv[2]}
    ) as session:
        session.run(pipeline_names=["featurize"])
    spark = SparkSession.getActiveSession()

    def modules(batches):
        import os, sys
        import pandas as pd
        for _ in batches:
            pass
        names = ("tensorflow", "keras", "onnxruntime")
        yield pd.DataFrame([{"pid": os.getpid(), **{n: n in sys.modules for n in names}}])

    schema = "pid long, tensorflow boolean, keras boolean, onnxruntime boolean"
    probe = spark.range(0, 8, numPartitions=8).mapInPandas(modules, schema)
    print(json.dumps([row.asDict() for row in probe.collect()]))
    """
)


def test_featurize_workers_import_onnx_runtime_and_not_tensorflow(test1_images, tmp_path):
    project = new_project(tmp_path)
    result = subprocess.run(
        [sys.executable, "-c", WORKER_MODULES, str(project), str(test1_images)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    workers = json.loads(result.stdout.strip().splitlines()[-1])
    summary = json.loads((project / "data/08_reporting/featurize_summary.json").read_text())
    assert summary["featurized"] == 20
    # The workers that embedded the images hold ONNX Runtime; none holds TensorFlow or Keras.
    assert any(worker["onnxruntime"] for worker in workers)
    assert not any(worker["tensorflow"] or worker["keras"] for worker in workers)
