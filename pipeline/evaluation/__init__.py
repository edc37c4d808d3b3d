"""Evaluation: every candidate under every metric on both splits (``evaluate``), the evidence
behind the pick (``evidence``, ``strength``), the audit record (``audit``) and the figures
(``plots``)."""
