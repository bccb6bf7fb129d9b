# syntax=docker/dockerfile:1.7
# One image for every in-cluster component: pipeline steps (Hera runner), operator, inference server.
# Built from the same lock as development, so the code a Workflow step runs is the code tested here.
#   docker build --build-arg GIT_COMMIT=$(git rev-parse HEAD) -t promoter .
ARG PYTHON_VERSION=3.11

FROM python:${PYTHON_VERSION}-slim AS build
COPY --from=ghcr.io/astral-sh/uv:0.13.9 /uv /usr/local/bin/uv
ENV UV_COMPILE_BYTECODE=1 UV_LINK_MODE=copy UV_PROJECT_ENVIRONMENT=/opt/promoter
WORKDIR /src
COPY pyproject.toml uv.lock ./
RUN --mount=type=cache,target=/root/.cache/uv uv sync --frozen --no-dev --no-install-project
COPY . .
RUN --mount=type=cache,target=/root/.cache/uv uv sync --frozen --no-dev --no-editable

FROM python:${PYTHON_VERSION}-slim AS runtime
ARG GIT_COMMIT=unknown
# Images carry no .git: lineage tags read the commit from here (promoter.lineage).
ENV PATH=/opt/promoter/bin:$PATH PROMOTER_GIT_COMMIT=${GIT_COMMIT} PYTHONUNBUFFERED=1 MPLCONFIGDIR=/tmp/matplotlib
COPY --from=build /opt/promoter /opt/promoter
RUN useradd --uid 10001 --create-home --shell /usr/sbin/nologin promoter
USER 10001
WORKDIR /home/promoter
ENTRYPOINT ["promoter"]

# The inference server: non-root, expects a read-only root filesystem (writable /tmp as an emptyDir).
FROM runtime AS serving
EXPOSE 8080
CMD ["serve", "--host", "0.0.0.0", "--port", "8080"]
