# The smartcity Python services (ingest, api, simulators, migrate) in one slim image.
FROM python:3.11.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app

# Dependency layer first: it is rebuilt only when pyproject.toml changes.
COPY pyproject.toml README.md ./
RUN mkdir -p smartcity && touch smartcity/__init__.py \
    && pip install . && pip uninstall -y smartcity && rm -rf smartcity

COPY smartcity ./smartcity
COPY ingest ./ingest
COPY simulators ./simulators
COPY api ./api
COPY dashboards ./dashboards
RUN pip install --no-deps . && useradd --system --uid 10001 smartcity
USER smartcity

ENTRYPOINT ["smartcity"]
CMD ["--help"]
