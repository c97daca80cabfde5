# Cashcycle image: the same package for the API and the worker (docker-compose.yml runs both).
FROM python:3.11-slim AS base
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 UV_PROJECT_ENVIRONMENT=/opt/venv UV_PYTHON_DOWNLOADS=never
# DejaVu gives the invoice PDFs a Unicode font.
RUN apt-get update && apt-get install -y --no-install-recommends fonts-dejavu-core \
    && rm -rf /var/lib/apt/lists/* && pip install --no-cache-dir uv==0.13.8
WORKDIR /app
COPY pyproject.toml uv.lock README.md ./
RUN uv sync --frozen --no-dev --no-install-project
COPY workflows workflows
COPY activities activities
COPY api api
COPY policies policies
COPY ui ui
COPY worker.py ./
RUN uv sync --frozen --no-dev
ENV PATH=/opt/venv/bin:$PATH CASHCYCLE_ENVIRONMENT=production
RUN useradd --system --uid 10001 cashcycle
USER cashcycle
CMD ["cashcycle", "api", "--host", "0.0.0.0", "--port", "8000"]
