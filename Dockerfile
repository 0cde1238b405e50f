FROM python:3.11-slim
WORKDIR /srv
COPY pyproject.toml README.md ./
COPY app app
COPY agents agents
COPY scripts scripts
RUN pip install --no-cache-dir .
CMD ["faust", "-A", "app", "worker", "-l", "info"]
