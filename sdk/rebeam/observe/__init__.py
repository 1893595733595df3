"""Looking at a running tree: the web observer (``rebeam observe``), and what ``rebeam tree``
and ``rebeam events`` share with it.

``treestate`` keeps a tree current from lifecycle events (one subscription, one tree request
per redraw interval); ``actorstats`` polls the per-process counters; ``directory`` lists
registered names and process groups; ``server`` serves the page and its event stream.
``console`` draws a tree and describes an event in a terminal, for ``rebeam tree``,
``rebeam events`` and ``rebeam run``'s own view.
"""
