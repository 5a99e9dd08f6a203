# syntax=docker/dockerfile:1
# Build stage: resolve and install dependencies into a venv (compilers stay here).
FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
RUN python -m venv /opt/venv
COPY pyproject.toml README.md LICENSE ./
COPY core ./core
COPY adapters ./adapters
COPY bots ./bots
RUN /opt/venv/bin/pip install .

# Runtime stage: just the venv and an unprivileged user.
FROM python:3.11-slim
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    DATABASE_URL=sqlite:////data/threadwise.db \
    PORT=3000 \
    LOG_FORMAT=json
RUN useradd --system --uid 10001 --home-dir /data --shell /usr/sbin/nologin threadwise \
    && mkdir -p /data && chown threadwise /data
COPY --from=build /opt/venv /opt/venv
USER threadwise
WORKDIR /data
VOLUME ["/data"]
EXPOSE 3000
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('PORT', '3000'), timeout=4)"]
ENTRYPOINT ["threadwise"]
CMD ["slack"]
