"""The command line: the group (:mod:`.main`) and one package per family of commands, each a
light ``commands`` module (options and help) and a ``run`` module (the work)."""
