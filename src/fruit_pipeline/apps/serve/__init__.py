"""fruit-serve: one photo at a time over HTTP, with a web page."""
