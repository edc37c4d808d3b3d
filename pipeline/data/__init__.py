"""Data: a raw table read and typed (``columns``), split and made imbalanced (``prepare``), its
features fitted and written (``preprocessing``), and the class weights computed (``weights``)."""
