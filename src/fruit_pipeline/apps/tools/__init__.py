"""Small command-line tools: the sample images, the features table's history."""
