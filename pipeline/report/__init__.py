"""The report: an HTML page from Jinja2 templates (``templates/``), given the run by ``render``."""
