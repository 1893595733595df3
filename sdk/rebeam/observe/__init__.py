"""The web observer (``rebeam observe``) and what it shares with ``rebeam tree --watch``.

``treestate`` keeps a tree current from lifecycle events (one subscription, one tree request
per redraw interval); ``actorstats`` polls the per-process counters; ``directory`` lists
registered names and process groups; ``server`` serves the page and its event stream.
"""
