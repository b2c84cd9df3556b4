"""The web page that fruit-serve serves at /."""
