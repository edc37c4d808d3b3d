"""DVC entry points, one per stage: parse arguments, call ``pipeline``, write outputs, log."""
