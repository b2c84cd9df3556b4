"""The command-line apps and the web service: configuration and core; Spark only to run it."""
