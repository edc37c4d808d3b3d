"""Training: the configurations of each loss (``plan``), the network (``model``), the losses
(``losses``, chosen through ``criterion``), the loop with early stopping (``train``), every
configuration of a loss trained at once (``sweep``), checkpoints, and the baselines."""
