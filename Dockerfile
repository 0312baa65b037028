# The kalshi services (gatherer, deduplicator) as one image: `kalshi <command>`.
#   docker build -t kalshi .                  (or: just build)
#   docker run --rm kalshi --help
FROM python:3.12-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN groupadd --system --gid 10001 kalshi \
 && useradd --system --uid 10001 --gid kalshi --home-dir /app --shell /usr/sbin/nologin kalshi

WORKDIR /app
# Dependencies first (a layer that survives code changes), then the code. The migrations
# (kalshi/sql/) ship inside the package.
COPY pyproject.toml README.md ./
RUN mkdir kalshi && touch kalshi/__init__.py && pip install . && pip uninstall -y kalshi
COPY kalshi ./kalshi
COPY etc ./etc
RUN pip install --no-deps . \
 && mkdir -p /app/.kalshi \
 && chown kalshi:kalshi /app/.kalshi

USER kalshi
# /health of the service in this container (the deduplicator's is on 8081: compose sets it).
ENV HEALTH_URL=http://127.0.0.1:8080/health
EXPOSE 8080 8081 9090 9091
VOLUME ["/app/.kalshi"]
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen(os.environ['HEALTH_URL'], timeout=2)"]

ENTRYPOINT ["kalshi"]
CMD ["gather", "--config", "etc/gatherer.yaml"]
