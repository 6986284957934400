# One image for every pallycon-pack role: `docker run IMAGE <subcommand>`.
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PROJECT_ENVIRONMENT=/app/.venv

RUN pip install --no-cache-dir uv
WORKDIR /app

# Dependencies first, so that code changes do not reinstall them.
COPY pyproject.toml uv.lock README.md ./
RUN uv sync --frozen --no-dev --no-install-project

COPY config ./config
COPY pallycon ./pallycon
COPY store ./store
COPY emulator ./emulator
COPY worker ./worker
COPY producers ./producers
COPY pallycon_pack ./pallycon_pack
COPY support ./support
RUN uv sync --frozen --no-dev

ENV PATH="/app/.venv/bin:$PATH"
RUN useradd --create-home --uid 10001 app && mkdir /data && chown app /data
USER app

ENTRYPOINT ["pallycon-pack"]
CMD ["--help"]
