"""The requests' shared state in Redis, and the rules for entering it.

Used by producers (which need Redis only) and by workers: key names, the typed request record
and its codec, the result events, the records with their transitions, the schedules, the
counters, the API's token bucket, the task messages, and the admission of new requests. Lua
scripts sit beside the module that runs them. Nothing here calls the PallyCon API.
"""
