"""`observer doctor`: checks what on a server makes observer blind or noisy (checks.py pure,
facts.py gathers, cli.py prints)."""
