"""Deciding: the metrics (``metrics``), the selection policy that reads them on validation
(``selection``), the post-hoc decision rules (``rules``) and the candidates they make
(``candidates``)."""
