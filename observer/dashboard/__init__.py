"""Dashboard: static HTML pages of every unit's health and history, readable without a server.

``pages`` writes the overview, unit and run pages from the store, ``markup`` draws them
(Jinja2 ``templates``; run pages and long lists in Python), ``views`` says what they show,
``charts`` draws their SVG, ``queries`` reads what ``history`` does not, ``site`` keeps the
directory and its manifest, ``writer`` writes the files, ``service`` rewrites them in the
daemon after runs end, each time in a process of its own (``rewrite``), ``serving`` answers
HTTP requests for them (on the metrics listener), ``cli`` is `observer report`.
"""
