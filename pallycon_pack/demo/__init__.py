"""``pallycon-pack demo``: the whole product on a bare machine: its options (:mod:`.commands`)
and its run (:mod:`.run`), with what it starts for itself: a private Redis-compatible server
(:mod:`.redis_server`) and a worker process (:mod:`.worker`)."""
