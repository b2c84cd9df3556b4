"""The maths of one image and one classifier: numpy, PIL and ONNX Runtime, no Spark, no Kedro."""
