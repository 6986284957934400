"""Every Redis key, stream, channel and Celery queue name pallycon-pack uses, in one place.

All keys share a prefix (``PALLYCON_KEY_PREFIX``, ``pp:`` by default) so that one Redis
database can be shared and inspected (``redis-cli --scan --pattern 'pp:*'``). Single Redis
server (or a primary with replicas) only, not Redis Cluster: one script touches keys in
several hash slots at once (a record, the result stream, both schedules and the job index),
and Cluster runs a script only when all its keys are in one slot.
"""

from __future__ import annotations

from dataclasses import dataclass

INTAKE_GROUP = "pallycon-pack"
#: The consumer group of the result stream that feeds the webhook deliveries (every worker).
WEBHOOK_GROUP = "pallycon-webhooks"

#: The priorities a submit lane is named after (``pallycon_store.flow.Priority``'s values).
LANE_PRIORITIES = ("high", "normal", "bulk")


def flow_site(site_id: str, default_site: str | None) -> str:
    """The site whose lanes, places in flight and pause hold a record of ``site_id``: "" for
    the default site, however the record names it (by its id: written before it became the
    default)."""
    return "" if site_id and site_id == default_site else site_id


def parked_stream(results: str, group: str) -> str:
    """Stream: the events of the result stream ``results`` that the consumer group ``group``
    parked (delivered too often without being acknowledged; see
    ``pallycon_producers.api.ResultGroup``): ``pp:results:parked:my-cms`` for ``pp:results``."""
    return f"{results}:parked:{group}"


@dataclass(frozen=True)
class Keys:
    prefix: str  # PALLYCON_KEY_PREFIX (see store.wiring.keys_of)

    @property
    def submit_queue(self) -> str:
        """Celery queue of submit tasks (named after the prefix: deployments stay apart)."""
        return f"{self.prefix}.submit"

    @property
    def poll_queue(self) -> str:
        """Celery queue of poll tasks."""
        return f"{self.prefix}.poll"

    def request(self, request_id: str) -> str:
        """Hash: the request's record (state, body, job id, last status, error)."""
        return f"{self.prefix}:req:{request_id}"

    def state_index(self, state: str) -> str:
        """Sorted set: request id -> when it entered ``state`` (one per state, every site's
        requests; see :mod:`pallycon_store.overview`)."""
        return f"{self.prefix}:state:{state}"

    def site_state_index(self, site_id: str, state: str) -> str:
        """Sorted set: as :meth:`state_index`, only the requests that named ``site_id``. For
        requests that named no site (``site_id`` ""): :meth:`state_index` itself, so that
        the scripts write it once."""
        if not site_id:
            return self.state_index(state)
        return f"{self.prefix}:site:{site_id}:state:{state}"

    @property
    def sites(self) -> str:
        """Hash: site id -> JSON ``{"region", "default"}`` of each site a worker serves,
        written at its start-up (never a secret): producers refuse a site not in it."""
        return f"{self.prefix}:sites"

    @property
    def submit_schedule(self) -> str:
        """Sorted set: request id -> when to (re)try its submission."""
        return f"{self.prefix}:schedule:submit"

    @property
    def poll_schedule(self) -> str:
        """Sorted set: request id -> when to poll its remote job next."""
        return f"{self.prefix}:schedule:poll"

    def submit_lane(self, site_id: str, priority: str) -> str:
        """Sorted set: request id -> when to (re)try its submission, for the requests of one
        site (stored form, "" = the default) and one priority (``high``, ``normal`` or
        ``bulk``; "" = normal): the sweeper takes the next ones from these lanes by priority
        and site (:mod:`pallycon_store.flow`). The default site's normal lane is
        :attr:`submit_schedule` (as before lanes existed)."""
        priority = priority if priority in LANE_PRIORITIES else "normal"
        if not site_id:
            return (
                self.submit_schedule
                if priority == "normal"
                else f"{self.submit_schedule}:{priority}"
            )
        return f"{self.prefix}:site:{site_id}:schedule:submit:{priority}"

    @property
    def submit_lanes(self) -> str:
        """Set: every submit lane (:meth:`submit_lane`) a request was ever put on."""
        return f"{self.prefix}:schedule:submit:lanes"

    @property
    def lanes_sorted(self) -> str:
        """String: set once the submit schedule of a version before lanes has been sorted into
        the lanes (:meth:`pallycon_store.flow.Flow.sort_old_schedule`)."""
        return f"{self.prefix}:schedule:submit:sorted"

    def dispatched(self, site_id: str) -> str:
        """Sorted set: request id -> lease end, of a site's requests sent to the submit queue
        whose task has not started yet (the sweeper sends no more than a few seconds' worth)."""
        return (
            f"{self.prefix}:site:{site_id}:flow:dispatched"
            if site_id
            else f"{self.prefix}:flow:dispatched"
        )

    def in_flight(self, site_id: str) -> str:
        """Set: a site's requests whose registration may have been sent and whose job has not
        finished (``submitting`` and ``submitted``), written with each change of state: what
        ``max_in_flight`` caps."""
        return (
            f"{self.prefix}:site:{site_id}:flow:in_flight"
            if site_id
            else f"{self.prefix}:flow:in_flight"
        )

    @property
    def paused(self) -> str:
        """Hash: site id (``*`` = every site) -> JSON ``{"reason", "at"}`` of a pause."""
        return f"{self.prefix}:flow:paused"

    @property
    def flow_events(self) -> str:
        """Stream: pauses and resumes, with their reasons (capped)."""
        return f"{self.prefix}:flow:events"

    @property
    def flow_kick(self) -> str:
        """List of at most one element: a sweeper blocked on it takes the next submissions at
        once (pushed when requests are recorded, a site's place at PallyCon frees, a submit
        task starts)."""
        return f"{self.prefix}:flow:kick"

    @property
    def job_index(self) -> str:
        """Hash: remote job (:meth:`job_field`) -> request id (for callbacks)."""
        return f"{self.prefix}:jobs"

    @staticmethod
    def job_field(site_id: str, job_id: str) -> str:
        """A remote job's field in :attr:`job_index`: job ids are per site. The bare job id
        for requests that named no site (the default site: as before sites existed), else
        ``<site>/<job id>``. Mirrored in transition.lua."""
        return f"{site_id}/{job_id}" if site_id else job_id

    def callback_poll(self, job_field: str) -> str:
        """String, expiring: a callback sent an immediate poll of this job (coalescing window;
        ``job_field`` as :meth:`job_field`)."""
        return f"{self.prefix}:callback:{job_field}"

    @property
    def results(self) -> str:
        """Stream: one event per change of a request (the result channel)."""
        return f"{self.prefix}:results"

    def result_parked(self, group: str) -> str:
        """Stream: the result events a consumer group parked (:func:`parked_stream`)."""
        return parked_stream(self.results, group)

    @property
    def wake_channel(self) -> str:
        """Pub/sub: a request id each time an event is added (a hint for live followers)."""
        return f"{self.prefix}:results:wake"

    @property
    def intake(self) -> str:
        """Stream: JSON packaging requests from non-Python producers."""
        return f"{self.prefix}:intake"

    @property
    def rate_limit(self) -> str:
        """Hash: the token bucket shared by every worker for calls to the API (the default
        site's)."""
        return f"{self.prefix}:ratelimit"

    def rate_limit_of(self, site_id: str) -> str:
        """Hash: a site's token bucket (``site_id`` "" = the default site: :attr:`rate_limit`)."""
        return f"{self.prefix}:ratelimit:{site_id}" if site_id else self.rate_limit

    @property
    def counters(self) -> str:
        """Hash: operational counters (API calls by kind, retries, reconciliations)."""
        return f"{self.prefix}:counters"

    @property
    def intake_failures(self) -> str:
        """Hash: intake entry id -> times its handling failed or its consumer died with it in
        hand (dead-lettered past the limit; Redis errors are not counted)."""
        return f"{self.prefix}:intake:failures"

    @property
    def heartbeats(self) -> str:
        """Hash: "<node>/<loop>" -> JSON health of each worker's background loops."""
        return f"{self.prefix}:heartbeats"

    @property
    def api_calls(self) -> str:
        """Hash: API calls' outcomes by code, durations (a histogram) and rate-limit waits."""
        return f"{self.prefix}:api"

    @property
    def webhook_endpoints(self) -> str:
        """Hash: webhook endpoint id -> JSON of the endpoint (URL, filters, state), its
        secrets encrypted (:mod:`pallycon_store.webhooks.endpoints`)."""
        return f"{self.prefix}:webhooks:endpoints"

    @property
    def http_tokens(self) -> str:
        """Hash: SHA-256 (hex) of an HTTP API token -> JSON of the token (name, sites,
        read-only, when added); never the token itself (:mod:`pallycon_store.tokens`)."""
        return f"{self.prefix}:http:tokens"

    @property
    def http_token_names(self) -> str:
        """Hash: an HTTP API token's name -> the SHA-256 (hex) it is kept under."""
        return f"{self.prefix}:http:token-names"

    def http_rate_limit(self, name: str) -> str:
        """Hash: the token bucket of the HTTP API token ``name`` (shared by every replica)."""
        return f"{self.prefix}:http:ratelimit:{name}"

    @property
    def webhooks_base(self) -> str:
        """The prefix of the per-endpoint and per-delivery webhook keys below (the delivery
        scripts build them from it: :mod:`pallycon_store.webhooks.deliveries`)."""
        return f"{self.prefix}:webhooks:"

    def webhook_delivery(self, delivery_id: str) -> str:
        """Hash: one webhook delivery (``<endpoint id>/<event id>``): its endpoint, webhook-id,
        type, body, attempts, last outcome; dead-letter reason once it ran out."""
        return f"{self.webhooks_base}delivery:{delivery_id}"

    def webhook_due(self, endpoint_id: str) -> str:
        """Sorted set: an endpoint's deliveries waiting to be sent -> when due."""
        return f"{self.webhooks_base}due:{endpoint_id}"

    def webhook_in_flight(self, endpoint_id: str) -> str:
        """Sorted set: an endpoint's deliveries being sent -> when their lease ends (then due
        again: the worker sending it is taken as dead)."""
        return f"{self.webhooks_base}inflight:{endpoint_id}"

    def webhook_pending(self, endpoint_id: str) -> str:
        """Sorted set: an endpoint's deliveries not delivered nor dead-lettered -> their
        event's time (the oldest is the endpoint's lag)."""
        return f"{self.webhooks_base}pending:{endpoint_id}"

    def webhook_dead(self, endpoint_id: str) -> str:
        """Sorted set: an endpoint's dead-letter list: delivery id -> when it went there."""
        return f"{self.webhooks_base}dead:{endpoint_id}"

    @property
    def webhook_schedule(self) -> str:
        """Sorted set: endpoint id -> when it next has a delivery to send (or a lease ending):
        what the claim reads first, so that each endpoint is served on its own."""
        return f"{self.webhooks_base}schedule"

    @property
    def webhook_state(self) -> str:
        """Hash: ``<endpoint id> last_success``, ``<endpoint id> failing_since`` and
        ``<endpoint id> last_failure`` (Unix seconds), ``<endpoint id> last_outcome`` (its
        last failed attempt's outcome while failing): an endpoint's health."""
        return f"{self.webhooks_base}state"

    @property
    def webhook_counters(self) -> str:
        """Hash: webhook attempts by outcome, latency and lag histograms, deliveries ended."""
        return f"{self.webhooks_base}counters"

    @property
    def webhook_events(self) -> str:
        """Stream: endpoints disabled by the workers (410 Gone, failing for days), capped."""
        return f"{self.webhooks_base}events"

    @property
    def durability_mark(self) -> str:
        """String, expiring: a tiny write made just before ``WAIT``/``WAITAOF``, on the same
        connection, so that the wait covers every change made before it (see durability.py)."""
        return f"{self.prefix}:durability"

    @property
    def health_probe(self) -> str:
        """String, expiring: written by ``pallycon-pack health`` to check Redis takes writes."""
        return f"{self.prefix}:health:probe"
