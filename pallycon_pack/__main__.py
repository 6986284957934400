"""``python -m pallycon_pack`` is ``pallycon-pack``."""

from pallycon_pack.cli.main import main

main()
