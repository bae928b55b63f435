# The smartcity Python services (migrate, ingest, api, simulators, dashboards push) in one
# slim image, run as an unprivileged user.
FROM python:3.11.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app
RUN useradd --system --uid 10001 --home-dir /app --shell /usr/sbin/nologin smartcity

# Dependency layer first: it is rebuilt only when pyproject.toml changes, not on every code
# change. A stub package lets pip resolve and install the pinned dependencies alone.
COPY pyproject.toml README.md ./
RUN mkdir -p smartcity && touch smartcity/__init__.py \
    && pip install . && pip uninstall -y smartcity && rm -rf smartcity

COPY smartcity ./smartcity
COPY ingest ./ingest
COPY simulators ./simulators
COPY api ./api
COPY dashboards ./dashboards
RUN pip install --no-deps . && rm -rf build *.egg-info

USER smartcity
ENTRYPOINT ["smartcity"]
CMD ["--help"]
