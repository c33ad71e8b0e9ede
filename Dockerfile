# Payment service image. With compose (API, worker, PostgreSQL, Redis, a one-off migration): `docker compose up`.
# Alone, on SQLite in the /data volume with the Paystack sandbox:
#   docker build -t payment-service .
#   docker run --rm -v payments:/data payment-service python -m app migrate
#   docker run -p 8000:8000 -v payments:/data payment-service
# The worker, beside an API started with WORKER_IN_PROCESS=false: `docker run ... payment-service python -m app worker`.
# Pass DATABASE_URL, REDIS_URL, PAYMENT_GATEWAY_MODE and secrets with -e or --env-file (docs/going-live.md).

# The package as a wheel, built apart so that the image holds one copy of `app` (in site-packages).
FROM python:3.11-slim AS wheel
WORKDIR /build
COPY pyproject.toml ./
COPY app/ ./app/
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /srv

# The locked dependencies (exact versions, checked by hash), in a layer of their own before the code: a change
# to the code does not install them again.
COPY requirements.lock ./
RUN pip install --no-cache-dir --require-hashes -r requirements.lock

# The service itself, without its dependencies (installed above).
COPY --from=wheel /wheels/ /tmp/wheels/
RUN pip install --no-cache-dir --no-deps /tmp/wheels/*.whl && rm -rf /tmp/wheels

# The migrations, for `python -m app migrate` (run from /srv, where alembic.ini is): a step of its own, never part
# of the command that starts the API, so that replicas starting together do not race to migrate.
COPY alembic.ini ./
COPY migrations/ ./migrations/

# Non-root user; the default SQLite file lives in DATA_DIR=/data, which that user owns.
RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --home-dir /data --no-create-home app \
    && mkdir -p /data \
    && chown app:app /data
ENV DATA_DIR=/data
VOLUME ["/data"]
USER app

EXPOSE 8000

HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, sys, urllib.request; port = os.environ.get('PORT', '8000'); sys.exit(0 if urllib.request.urlopen(f'http://127.0.0.1:{port}/healthz', timeout=4).status == 200 else 1)"]

# The API, on PORT (8000 unless set); it refuses to start (one line) unless `python -m app migrate` brought the
# schema up to date.
CMD ["python", "-m", "app", "serve", "--host", "0.0.0.0", "--no-migrate"]
