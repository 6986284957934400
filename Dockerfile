# One image for every pallycon-pack role: `docker run IMAGE <subcommand>`. docker-compose.yml
# builds it once (as pallycon-pack:local) and runs each service from it.
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PROJECT_ENVIRONMENT=/app/.venv

# uv pinned: the same resolver reads uv.lock on every build.
RUN pip install --no-cache-dir uv==0.13.9
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
# Not editable: the project is compiled with the rest (UV_COMPILE_BYTECODE), so a probe
# starts from bytecode even on a read-only root filesystem.
RUN uv sync --frozen --no-dev --no-editable

# The emulator's data directory, seeded with the inputs examples/ name (bucket my-bucket, as
# the README registers it): a named volume mounted here starts as a copy of it.
COPY examples/emulator-data /data

ENV PATH="/app/.venv/bin:$PATH"
RUN useradd --create-home --uid 10001 app && chown -R app /data
USER app

ENTRYPOINT ["pallycon-pack"]
CMD ["--help"]
