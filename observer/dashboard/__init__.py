"""Dashboard: static HTML pages of every unit's health and history, readable without a server.

``pages`` writes the overview, unit and run pages from the store (Jinja2 ``templates``),
``charts`` draws their SVG, ``service`` rewrites them in the daemon after runs end, ``cli`` is
`observer report`.
"""
