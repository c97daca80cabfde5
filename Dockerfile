# Cashcycle image: the same package for the API and the worker (docker-compose.yml runs both).
FROM python:3.11-slim AS base
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 UV_PROJECT_ENVIRONMENT=/opt/venv UV_PYTHON_DOWNLOADS=never
# DejaVu gives the invoice PDFs a Unicode font.
RUN apt-get update && apt-get install -y --no-install-recommends fonts-dejavu-core \
    && rm -rf /var/lib/apt/lists/* && pip install --no-cache-dir uv==0.13.8
WORKDIR /app
COPY pyproject.toml uv.lock README.md ./
RUN uv sync --frozen --no-dev --no-install-project --compile-bytecode
COPY workflows workflows
COPY activities activities
COPY api api
COPY demo demo
COPY portal_sim portal_sim
COPY policies policies
COPY ui ui
COPY worker.py ./
# Byte-compiled at build time: PYTHONDONTWRITEBYTECODE and a read-only user would otherwise make every
# process (and the workflow sandbox's imports) compile the sources again.
RUN uv sync --frozen --no-dev --compile-bytecode \
    && /opt/venv/bin/python -m compileall -q workflows activities api demo portal_sim worker.py
ENV PATH=/opt/venv/bin:$PATH CASHCYCLE_ENVIRONMENT=production
RUN useradd --system --uid 10001 cashcycle
USER cashcycle
CMD ["cashcycle", "api", "--host", "0.0.0.0", "--port", "8000"]
