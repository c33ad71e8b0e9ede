# Payment service: `docker build -t payment-service . && docker run -p 8000:8000 payment-service`
# With no configuration it runs on SQLite (in the /data volume) with the Paystack sandbox;
# pass DATABASE_URL, REDIS_URL, PAYMENT_GATEWAY_MODE and secrets with -e or --env-file.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONPATH=/app

WORKDIR /app

# Dependencies and the package itself (pyproject.toml + app/ are all setuptools needs).
COPY pyproject.toml ./
COPY app/ ./app/
RUN pip install --no-cache-dir .

# Migrations: `python -m app serve` upgrades the schema from /app/alembic.ini before serving.
COPY migrations/ ./migrations/
COPY alembic.ini ./

# Non-root user; the SQLite default lives in /data, which that user owns.
RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --home-dir /data --no-create-home app \
    && mkdir -p /data \
    && chown app:app /data
ENV DATABASE_URL=sqlite+aiosqlite:////data/payments.db
VOLUME ["/data"]
USER app

EXPOSE 8000

HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request, sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4).status == 200 else 1)"]

CMD ["python", "-m", "app", "serve", "--host", "0.0.0.0", "--port", "8000"]
